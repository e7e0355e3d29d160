"""The classifier behind a generative run's sample quality: named, or trained once and cached.

`sample_quality.classifier_workdir` names a finished classification run on the same data. When
it is '', the experiment `sample_quality.classifier_config` is trained here, before the
generative run starts, into JAXDL_CACHE_DIR (default ~/.cache/jaxdl)/feature_classifiers/,
under a name that carries a hash of its whole config (`classifier_overrides` included): every
later run with the same classifier config reuses it, and a changed config trains a new one. It is trained in a private folder and renamed
into place when finished, so a killed training never leaves a half-trained classifier to reuse.
"""

import hashlib
import os
import shutil
from pathlib import Path

import ml_collections

from jaxdl.engine import loop, workdir
from jaxdl.engine.sample_quality import cache_root
from jaxdl.errors import UserInputError


def classifier_dir(config: ml_collections.ConfigDict) -> Path:
    """The folder of the feature classifier `config` asks for, trained first if needed."""
    from jaxdl.cli import parse_config  # The CLI's experiment resolution; cli imports us lazily.

    section = config.sample_quality
    if section.get("classifier_workdir"):
        return Path(section.classifier_workdir)
    spec = section.classifier_config
    overrides = list(section.get("classifier_overrides", ()))
    classifier_config = parse_config(spec, overrides)
    if classifier_config.task.name != "classification":
        raise UserInputError(
            f"sample_quality.classifier_config={spec!r} is a {classifier_config.task.name!r} "
            "experiment; name a classification run (e.g. digits_cnn)."
        )
    # The same data: read from where this run reads it.
    classifier_config.data.data_dir = config.data.data_dir
    if classifier_config.data.name != config.data.name:
        raise UserInputError(
            f"sample_quality.classifier_config={spec!r} {' '.join(overrides)} trains on {classifier_config.data.name!r}, "
            f"this run on {config.data.name!r}; name an experiment on the same data."
        )
    digest = hashlib.sha256(workdir.config_to_json(classifier_config).encode()).hexdigest()
    name = Path(spec.split(":")[0]).stem + "".join(f"-{v}" for v in spec.split(":")[1:])
    target = cache_root() / "feature_classifiers" / f"{name}-{digest[:12]}"
    if (target / workdir.SUMMARY_FILE).is_file():
        print(f"sample quality: feature classifier {target}")
        return target
    print(f"sample quality: training the feature classifier {spec} once, cached in {target}")
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    workdir.start_new(partial, classifier_config)
    summary = loop.train(
        loop.setup(classifier_config),
        partial,
        run_info={"command": f"jaxdl train --config {spec} (feature classifier)"},
    )
    print(f"sample quality: feature classifier test accuracy {summary['final_metrics']}")
    try:
        partial.rename(target)
    except OSError:  # Another run cached the same classifier meanwhile: keep theirs.
        shutil.rmtree(partial, ignore_errors=True)
    return target
