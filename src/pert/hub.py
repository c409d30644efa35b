"""Hub ids wherever pert takes a model or a vocabulary.

A name that is not a local path (``hfl/chinese-pert-base``) is found with ``huggingface_hub``: its cache
(``HF_HOME``, ``HF_HUB_CACHE``), downloaded when online, looked up only in the cache under
``HF_HUB_OFFLINE=1``; ``revision`` picks a branch, tag or commit. Every verb goes through ``resolve_model``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

# What pert reads from a model repository (not TensorFlow/Flax/ONNX weights).
MODEL_FILES = ["*.json", "*.txt", "*.safetensors", "pytorch_model*.bin", "README.md"]
# ``pert convert tf1`` reads a TF1 checkpoint instead.
TF1_FILES = ["*.json", "*.txt", "*.index", "*.data-*", "checkpoint"]

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def is_hub_id(name: str | Path) -> bool:
    """Whether ``name`` can be a Hub repository id (``owner/name`` or ``name``) rather than a file name."""
    text = str(name)
    return (isinstance(name, str) and _REPO_ID.fullmatch(text) is not None and ".." not in text
            and not text.endswith((".txt", ".json", ".bin", ".safetensors", ".index", ".yaml")))


def resolve_model(name: str | Path, revision: str | None = None, files: list[str] | None = None) -> Path:
    """The local folder of ``name``: the path itself when it exists (or cannot be a Hub id), else the Hub
    snapshot of that id at ``revision``. Errors are one line saying what to do."""
    path = Path(name)
    if path.exists() or not is_hub_id(name):
        if revision:
            log.warning("%s is a local path: --revision %s is ignored", name, revision)
        return path
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    fetch = f"`hf download {name}" + (f" --revision {revision}" if revision else "") + "`"
    offline = constants.HF_HUB_OFFLINE
    try:
        folder = snapshot_download(str(name), revision=revision, allow_patterns=files or MODEL_FILES,
                                   local_files_only=offline)
    except RevisionNotFoundError as e:
        raise FileNotFoundError(f"{name}: the Hub repository has no revision {revision!r}") from e
    except GatedRepoError as e:
        raise FileNotFoundError(f"{name}: a gated Hub repository; accept its terms on the Hub and log in "
                                "with `hf auth login`") from e
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(f"{name}: no such local file or folder, and no such model on the Hugging Face "
                                "Hub (a private one needs `hf auth login`)") from e
    except LocalEntryNotFoundError as e:
        where = f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
        if offline:
            raise FileNotFoundError(f"{name}: no such local folder, and not in {where} while HF_HUB_OFFLINE is "
                                    f"set; fetch it with {fetch} (huggingface-cli download works too) or "
                                    "unset HF_HUB_OFFLINE") from e
        raise FileNotFoundError(f"{name}: no such local folder, not in {where}, and the Hub cannot be "
                                f"reached; fetch it where there is a network with {fetch}") from e
    except HfHubHTTPError as e:
        raise FileNotFoundError(f"{name}: the Hugging Face Hub refused the download "
                                f"({str(e).splitlines()[0]})") from e
    return Path(folder)
