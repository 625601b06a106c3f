"""A multimodal model's processor files, read as JSON the way vLLM 0.32 has transformers 5.19 read them.

vLLM builds the model's HF processor from the model repository (transformers_utils/processor.py::get_processor:
`<Processor>.from_pretrained(model, revision=..., **mm_processor_kwargs)`); the processor loads each
sub-processor from the repository's files (processing_utils.py::ProcessorMixin._get_arguments_from_pretrained
-> AutoImageProcessor / AutoVideoProcessor.from_pretrained), and which file wins is:

  image processor (image_processing_base.py::get_image_processor_dict): processor_config.json's nested
      "image_processor" object, else preprocessor_config.json;
  video processor (video_processing_utils.py::get_video_processor_dict): processor_config.json's nested
      "video_processor", else video_preprocessor_config.json, else preprocessor_config.json.

The chosen object's keys are the processor's constructor arguments (from_dict: cls(**dict)), over the class
defaults; --mm-processor-kwargs go over them (memory/encoder.py). A file whose `auto_map` names an
AutoImageProcessor / AutoVideoProcessor class is remote code: kvfit never runs it, so that processor is
left on the class defaults, and the note says so.

Nothing here is imported or executed from a repository: the files are JSON data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .model import ProcessorFiles, read_json_file

PROCESSOR = "processor_config.json"
IMAGE = "preprocessor_config.json"
VIDEO = "video_preprocessor_config.json"
NAMES = (PROCESSOR, IMAGE, VIDEO)


@dataclass(frozen=True)
class Processors:
    """What the model's processors are built from: the image and video processor settings (None: the class
    defaults) and one phrase saying where they came from or, without them, why (for the report's note)."""

    image: dict | None
    video: dict | None
    origin: str


def read_dir(directory: Path, where: str | None = None) -> ProcessorFiles:
    """The processor files present in a directory (a local model directory or an HF cache snapshot)."""
    files = {n: read_json_file(directory / n) for n in NAMES if (directory / n).is_file()}
    return ProcessorFiles(files, where or str(directory), None if files else f"{directory} has no processor file",
                          repo_has_none=not files)


def _nested(proc: Mapping | None, key: str) -> dict | None:
    v = proc.get(key) if isinstance(proc, Mapping) else None
    return dict(v) if isinstance(v, Mapping) else None


def _remote(d: Mapping | None, auto_class: str) -> str | None:
    amap = d.get("auto_map") if isinstance(d, Mapping) else None
    if isinstance(amap, Mapping) and amap.get(auto_class):
        ref = amap[auto_class]
        return str(ref[0] if isinstance(ref, (list, tuple)) and ref else ref)
    return None


def pick(pf: ProcessorFiles | None) -> Processors:
    """The image and video processor settings transformers 5.19 would build from these files (the precedence
    in the module docstring), and where they came from."""
    if pf is None or not pf.found:
        return Processors(None, None, pf.missing if pf is not None and pf.missing else
                          "kvfit has none of the model's processor files")
    files = pf.files
    proc = files.get(PROCESSOR)
    image, image_from = _nested(proc, "image_processor"), f"{PROCESSOR} image_processor"
    if image is None and isinstance(files.get(IMAGE), Mapping):
        image, image_from = dict(files[IMAGE]), IMAGE
    video, video_from = _nested(proc, "video_processor"), f"{PROCESSOR} video_processor"
    for name in (VIDEO, IMAGE):
        if video is None and isinstance(files.get(name), Mapping):
            video, video_from = dict(files[name]), name
    remote = []
    for kind, auto in (("image", "AutoImageProcessor"), ("video", "AutoVideoProcessor")):
        cls = _remote(image if kind == "image" else video, auto)
        if cls:
            remote.append(f"the {kind} processor is remote code ({auto}: {cls}; kvfit never runs it), so its "
                          "sizes are the processor class defaults")
            if kind == "image":
                image = None
            else:
                video = None
    used = []
    if image is not None:
        used.append(image_from)
    if video is not None and video_from not in used:
        used.append(video_from)
    if used:
        origin = f"the model's {' and '.join(used)} ({pf.where})"
    else:
        origin = f"the model's processor files in {pf.where} name no image or video processor"
    if remote:
        origin += "; " + "; ".join(remote)
    return Processors(image, video, origin)
