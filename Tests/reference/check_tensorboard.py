"""Reads a run's TensorBoard events with the tensorboard package and prints what it finds.

    pip install tensorboard
    python3 Tests/reference/check_tensorboard.py runs/<run>

Exits non-zero if the expected tags are missing or their steps are not increasing.
"""
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    run = sys.argv[1]
    acc = EventAccumulator(run + "/tensorboard", size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    need = ["train/loss", "eval/psnr", "eval/ssim", "eval/noisy_psnr"]
    missing = [t for t in need if t not in tags["scalars"]]
    for tag in sorted(tags["scalars"]):
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        assert steps == sorted(set(steps)), f"{tag}: steps not strictly increasing: {steps}"
        print(f"{tag}: {len(events)} points, steps {steps[0]}..{steps[-1]}, last {events[-1].value:.6g}")
    for tag in tags["images"]:
        images = acc.Images(tag)
        print(f"{tag}: {len(images)} images, last {images[-1].width}x{images[-1].height} at step {images[-1].step}")
    if missing or not tags["images"]:
        print("missing:", missing or "images")
        sys.exit(1)


if __name__ == "__main__":
    main()
