// Open MPI for Swift. mpi.h defines its handles (MPI_COMM_WORLD, MPI_SUM, MPI_FLOAT, MPI_IN_PLACE,
// ...) as macros that expand to casts of global symbols, which Swift cannot import; these tiny
// functions hand them over as values.
#include <mpi.h>

static inline MPI_Comm dae_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Op dae_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op dae_mpi_max(void) { return MPI_MAX; }
static inline MPI_Datatype dae_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype dae_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype dae_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype dae_mpi_byte(void) { return MPI_BYTE; }
static inline void *dae_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler dae_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int dae_mpi_success(void) { return MPI_SUCCESS; }
static inline int dae_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline MPI_Info dae_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline int dae_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline MPI_Request dae_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *dae_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
