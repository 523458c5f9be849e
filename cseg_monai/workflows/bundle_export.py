"""Share a bundle as one zip: export a self-contained model-zoo copy, import it back anywhere.

``export_bundle(NAME, "NAME.zip")`` writes a zip that holds ONE top-level folder named after
the bundle (what ``python -m monai.bundle download --name NAME --url file:///.../NAME.zip``
and :func:`import_bundle` expect) with:

* ``configs/`` (made portable, see below), ``models/`` (the weights) plus ``models/model.ts``,
  the TorchScript network made with MONAI's ``monai.bundle.ckpt_export`` (bundles with a network
  only, see :func:`has_network`), ``docs/``, ``LICENSE``, ``sample_data/`` and any bundle-local
  ``scripts/``; never the git-ignored run folders (:data:`EXCLUDED`);
* ``eval/schema.json``: the metadata schema (``configs/metadata_schema.json`` of this project),
  where the model zoo's ``ci/verify_bundle.py`` and ``monai.bundle verify_metadata`` look for it
  before they try to download the ``schema`` named in ``metadata.json``; so the unpacked copy
  passes ``verify_bundle.py -m full`` offline, with nothing from this repository;
* a section ``## This exported copy`` appended to ``docs/README.md`` that lists every rewrite.

Paths in the configs: what an exported copy has instead
--------------------------------------------------------
A bundle in this repository may reach outside its own folder in two ways, and the copy must not:

1. **Data-set defaults** such as ``"$str(cseg_monai.common.data_root('isbi2012'))"``:
   ``$CSEG_DATA_DIR/isbi2012`` when that variable is set, else ``../shared/data/isbi2012``
   beside the *package checkout* -- a folder that exists only in this project's layout (and for
   a package installed from a wheel, nowhere). The copy gets the same rule with the bundle's own
   folder as the fallback::

       $str(os.path.join(os.environ.get('CSEG_DATA_DIR') or @bundle_root + '/data', 'isbi2012'))

   Why rewrite rather than keep ``data_root``: the environment variable keeps working exactly
   as before (one variable for every bundle and for this repository), and without it the default
   is a ``data/`` folder *inside* the unpacked bundle, the one place that travels with it,
   instead of a path that silently means something different on every machine. (The bundles'
   ``configs`` all ``import os``, which the rewritten expression uses; the export checks it.)
2. **Paths into a sibling bundle**, ``@bundle_root + '/../OTHER_BUNDLE/...'`` (today one:
   ``prob_dir`` of ``em_densecrf_postprocessing/configs/evaluate.json``, the probabilities that
   the organelle bundle's evaluation writes to its ``eval/``). The copy reads them from its own
   data folder, ``@bundle_root + '/data/OTHER_BUNDLE/...'`` (pass ``--prob_dir`` or copy the
   files there); a bundle must not depend on where another one happens to be unpacked.

Anything else that still leaves the bundle after these rewrites -- a ``..`` path component, an
absolute path into this checkout, ``bundles_dir()``, another ``data_root`` call -- makes the
export fail with a ``ValueError`` that names the config file and the id. ``bundle_root`` stays
``$cseg_monai.workflows.bundle_root('NAME')``: it is found from the config file being run, so the
copy finds its own folder (``cseg``, :mod:`~cseg_monai.workflows.launch` and
``python -m monai.bundle run --config_file COPY/configs/inference.json`` all pass it or show it).

Versions
--------
:func:`bundle_digest` is the SHA-256 of a bundle's configs and weights (``metadata.json``
without its ``version`` and ``changelog``); ``scripts/record_bundle_versions.py`` records it
with the version, and a test fails when the digest changes while the version does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser, ckpt_export

from cseg_monai.workflows.bundle_support import bundles_dir, list_bundles
from cseg_monai.workflows.launch import resolve_bundle

__all__ = [
    "DATA_DIR_ENV",
    "EXCLUDED",
    "ExportedBundle",
    "NET_ID",
    "BundleExistsError",
    "bundle_digest",
    "export_bundle",
    "has_network",
    "import_bundle",
    "inference_config",
    "portable_config",
]

#: folders of a bundle that are never exported (git-ignored run outputs and caches)
EXCLUDED = ("eval", "outputs", "mlruns", "__pycache__", ".ipynb_checkpoints")
#: files never exported (caches; TorchScript files are made afresh from the weights)
EXCLUDED_FILES = ("*.pyc", ".DS_Store", "models/model.ts", "models/verify_model.ts")
#: the id of the network in an inference config (the model zoo's ``verify_bundle.py`` uses it)
NET_ID = "network_def"
#: the environment variable that points every bundle at the data folder (as ``cseg_monai.common.data_root``)
DATA_DIR_ENV = "CSEG_DATA_DIR"
#: the section appended to the exported ``docs/README.md``
EXPORT_SECTION = "## This exported copy"

_DATA_FALLBACK = f"(os.environ.get('{DATA_DIR_ENV}') or @bundle_root + '/data')"
_DATA_ROOT_CALL = re.compile(r"""cseg_monai\.common(?:\.paths)?\.data_root\(\s*(?:(['"])([^'"]*)\1)?\s*\)""")
_SIBLING = re.compile(r"""@bundle_root\s*\+\s*(['"])/\.\./([A-Za-z0-9_.-]+)(/[^'"]*)?\1""")
_PARENT = re.compile(r"""(?:^|[/\\'"\s$])\.\.(?:[/\\'"]|$)""")


class BundleExistsError(FileExistsError, ValueError):
    """The target (a zip or a bundle folder) exists and ``overwrite`` was not given."""


@dataclass(frozen=True)
class ExportedBundle:
    """What :func:`export_bundle` wrote.

    Attributes:
        path: the zip file.
        name: the bundle's name (the zip's one top-level folder).
        version: ``version`` of its ``configs/metadata.json``.
        digest: :func:`bundle_digest` of the source bundle.
        rewrites: ``"FILE: ID: OLD -> NEW"`` for every config value made portable.
        torchscript: whether ``models/model.ts`` was made (bundles with a network).
    """

    path: Path
    name: str
    version: str
    digest: str
    rewrites: tuple[str, ...] = field(default_factory=tuple)
    torchscript: bool = False

    def __str__(self) -> str:
        lines = [f"{self.name} v{self.version} exported to {self.path}"]
        lines += [f"  rewritten {r}" for r in self.rewrites]
        lines.append("  models/model.ts made with monai.bundle ckpt_export" if self.torchscript else "  no network: no model.ts")
        return "\n".join(lines)


def inference_config(bundle_dir: str | os.PathLike) -> Path | None:
    """The bundle's ``configs/inference.{json,yaml,yml}`` (as the model zoo's ``verify_bundle.py`` finds it), or ``None``.

    Example:
        >>> inference_config(bundles_dir() / "isbi2012_em_membrane_segmentation").name
        'inference.json'
    """
    for suffix in ("json", "yaml", "yml"):
        path = Path(bundle_dir) / "configs" / f"inference.{suffix}"
        if path.is_file():
            return path
    return None


def has_network(bundle_dir: str | os.PathLike) -> bool:
    """The rule: a bundle has a network if and only if its inference config defines ``network_def``.

    Bundles without one (the dense-CRF bundle) ship no weights and no ``model.ts``, and the model
    zoo exempts them from its network steps (``scripts/model_zoo_verify.py``).

    Raises:
        ValueError: the bundle has no inference config.

    Example:
        >>> has_network(bundles_dir() / "em_densecrf_postprocessing")
        False
    """
    config = inference_config(bundle_dir)
    if config is None:
        raise ValueError(f"{Path(bundle_dir).name}: no configs/inference.json (or .yaml/.yml)")
    return NET_ID in ConfigParser.load_config_file(str(config))


def _digest_files(root: Path) -> list[Path]:
    files = []
    for sub in ("configs", "models"):
        for path in sorted((root / sub).rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def bundle_digest(bundle: str | os.PathLike) -> str:
    """SHA-256 (hex) of a bundle's configs and weights, blind to its ``version`` and ``changelog``.

    Definition: every file under ``configs/`` and ``models/`` (recursively; ``__pycache__`` and
    ``*.pyc`` left out), in the order of their relative POSIX paths; for each, the hash is fed
    ``PATH + b"\\0" + str(len(DATA)) + b"\\0" + DATA``. ``DATA`` is the file's bytes, except for
    ``configs/metadata.json``, whose ``version`` and ``changelog`` are removed and the rest written
    as ``json.dumps(meta, sort_keys=True, separators=(",", ":"))`` (so bumping the version does
    not change the digest, and neither does re-indenting the file).

    Args:
        bundle: name or folder of the bundle.

    Example:
        >>> len(bundle_digest("isbi2012_em_membrane_segmentation"))
        64
    """
    root = resolve_bundle(bundle)
    digest = hashlib.sha256()
    for path in _digest_files(root):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if rel == "configs/metadata.json":
            try:
                meta = json.loads(data)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON ({err})") from err
            meta.pop("version", None)
            meta.pop("changelog", None)
            data = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
        digest.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()


def _portable_value(value: str, siblings: set[str]) -> str:
    """``value`` with data-set defaults and sibling-bundle paths rewritten (see the module docs)."""

    def data_root(match: re.Match) -> str:
        name = match.group(2)
        return f"os.path.join{_DATA_FALLBACK[:-1]}, {name!r})" if name else f"os.path.join{_DATA_FALLBACK}"

    def sibling(match: re.Match) -> str:
        if match.group(2) not in siblings:
            return match.group(0)
        quote = match.group(1)
        return f"@bundle_root + {quote}/data/{match.group(2)}{match.group(3) or ''}{quote}"

    if value.startswith("$"):
        value = _DATA_ROOT_CALL.sub(data_root, value)
        value = _SIBLING.sub(sibling, value)
    return value


def _leaks(value: str, checkout: Path) -> str | None:
    """Why ``value`` still reaches outside the bundle, or ``None``."""
    if "data_root(" in value:
        return "a data_root() call the export cannot rewrite"
    if "bundles_dir(" in value:
        return "bundles_dir() points into this checkout"
    if str(checkout) in value:
        return f"an absolute path into this checkout ({checkout})"
    if _PARENT.search(value):
        return "a '..' path component that leaves the bundle folder"
    return None


def _walk(node: Any, path: str = ""):
    """``(id, string)`` for every string in a parsed config, ids joined with ``#`` as MONAI writes them."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}#{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}#{i}" if path else str(i))
    elif isinstance(node, str):
        yield path, node


def _replace(node: Any, fn) -> Any:
    if isinstance(node, dict):
        return {k: _replace(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, fn) for v in node]
    return fn(node) if isinstance(node, str) else node


def portable_config(path: str | os.PathLike, siblings: set[str] | None = None) -> tuple[str, list[str]]:
    """The text of a bundle's JSON config with every path outside the bundle rewritten (see the module docs).

    Args:
        path: a ``configs/*.json`` file.
        siblings: names of other bundles whose folders ``@bundle_root + '/../NAME/...'`` may
            name; default the bundles of this checkout.

    Returns:
        ``(text, rewrites)``: the new file text (the original bytes where nothing changed; else
        the original with each changed string replaced, re-indented only where that cannot be
        done in place) and ``"FILE: ID: OLD -> NEW"`` for each changed value.

    Raises:
        ValueError: naming the file and the id of a value that still leaves the bundle, or of a
            rewritten value in a file that does not ``import os`` while it is not an override.

    Example:
        >>> text, rewrites = portable_config(bundles_dir() / "isbi2012_em_membrane_segmentation" / "configs" / "train.json")
        >>> rewrites[0].split(" -> ")[1]
        '"$str(os.path.join(os.environ.get(\\'CSEG_DATA_DIR\\') or @bundle_root + \\'/data\\', \\'isbi2012\\'))"'
    """
    path = Path(path)
    siblings = set(list_bundles()) if siblings is None else set(siblings)
    text = path.read_text()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    new_config = _replace(config, lambda s: _portable_value(s, siblings))
    checkout = bundles_dir().parent
    rewrites = []
    for (key, old), (_, new) in zip(_walk(config), _walk(new_config)):
        reason = _leaks(new, checkout)
        if reason:
            raise ValueError(f"{path}: {key!r} = {old!r} reaches outside the bundle: {reason}; an exported bundle cannot hold it")
        if new != old:
            rewrites.append(f"{path.parent.name}/{path.name}: {key}: {json.dumps(old)} -> {json.dumps(new)}")
    if not rewrites:
        return text, []
    imports = config.get("imports", []) if isinstance(config, dict) else []
    if imports and not any(re.fullmatch(r"\$\s*import\s+os\s*", i) for i in imports if isinstance(i, str)):
        raise ValueError(f"{path}: its rewritten paths use os.path, but its 'imports' lack \"$import os\"")
    new_text = text
    for (_, old), (_, new) in zip(_walk(config), _walk(new_config)):
        if new != old:
            new_text = new_text.replace(json.dumps(old), json.dumps(new), 1)
    if json.loads(new_text) != new_config:  # the file escapes a string differently: write it anew
        new_text = json.dumps(new_config, indent=4) + "\n"
    return new_text, rewrites


def _excluded(rel: Path) -> bool:
    if rel.parts[0] in EXCLUDED or "__pycache__" in rel.parts:
        return True
    return any(rel.match(p) for p in EXCLUDED_FILES)


def _metadata(root: Path) -> dict:
    meta_file = root / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{meta_file}: not valid JSON ({err})") from err
    for key in ("version", "changelog"):
        if key not in meta:
            raise ValueError(f"{meta_file}: no {key!r}")
    if meta["version"] not in meta["changelog"]:
        raise ValueError(f"{meta_file}: version {meta['version']} has no changelog entry")
    return meta


def _schema_source(root: Path) -> Path | None:
    for candidate in (root / "eval" / "schema.json", bundles_dir().parent / "configs" / "metadata_schema.json"):
        if candidate.is_file():
            return candidate
    return None


def _stage(root: Path, target: Path) -> tuple[list[str], bool]:
    """Write the portable copy of bundle ``root`` into ``target``; returns (rewrites, made model.ts)."""
    siblings = set(list_bundles()) - {root.name}
    rewrites: list[str] = []
    for src in sorted(root.rglob("*")):
        rel = src.relative_to(root)
        if _excluded(rel) or src.is_dir():
            continue
        if src.is_symlink():
            raise ValueError(f"{src}: a symbolic link; an exported bundle holds plain files only")
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "configs" and src.suffix == ".json":
            text, changed = portable_config(src, siblings)
            rewrites += changed
            dst.write_text(text)
            shutil.copystat(src, dst)
        elif rel.parts[0] == "configs" and src.suffix in (".yaml", ".yml"):  # checked, not rewritten
            for key, value in _walk(ConfigParser.load_config_file(str(src))):
                reason = _leaks(value, bundles_dir().parent)
                if reason:
                    raise ValueError(f"{src}: {key!r} reaches outside the bundle ({reason}); only JSON configs are rewritten")
            shutil.copy2(src, dst)
        else:
            shutil.copy2(src, dst)
    schema = _schema_source(root)
    if schema is not None:
        (target / "eval").mkdir(exist_ok=True)
        shutil.copyfile(schema, target / "eval" / "schema.json")
    torchscript = has_network(target)
    if torchscript:
        weights = target / "models" / "model.pt"
        if not weights.is_file():
            raise ValueError(f"{root / 'models' / 'model.pt'} is missing: a bundle with a {NET_ID!r} exports its weights")
        ckpt_export(
            net_id=NET_ID,
            filepath=str(target / "models" / "model.ts"),
            ckpt_file=str(weights),
            meta_file=str(target / "configs" / "metadata.json"),
            config_file=str(inference_config(target)),
            bundle_root=str(target),
        )
    return rewrites, torchscript


def _export_notes(meta: dict, digest: str, rewrites: list[str], torchscript: bool, schema: bool) -> str:
    lines = [
        "",
        EXPORT_SECTION,
        "",
        f"Exported by `cseg bundle export` from version {meta['version']} (configs and weights SHA-256 `{digest}`,",
        "`cseg_monai.workflows.bundle_digest`). It needs the `cseg-monai` package, not its source tree.",
        "",
        f"- Data: a data-set default is `${DATA_DIR_ENV}/<set>` when `{DATA_DIR_ENV}` is set, else `data/<set>` in this folder.",
    ]
    lines += [f"- Rewritten `{r}`" for r in rewrites]
    if torchscript:
        lines.append("- Added `models/model.ts`: the network as TorchScript (`monai.bundle ckpt_export` of `models/model.pt`).")
    if schema:
        lines.append("- Added `eval/schema.json`: the metadata schema, so `verify_metadata` and the model zoo's checks run offline.")
    return "\n".join(lines) + "\n"


def _resolve_zip_target(out_zip: str | os.PathLike, name: str) -> Path:
    out = Path(out_zip)
    if out.is_dir() or str(out_zip).endswith(("/", os.sep)):
        return out / f"{name}.zip"
    if out.suffix != ".zip":
        raise ValueError(f"out_zip must be a file name ending in .zip or a folder (existing, or ending in '/'), got {str(out_zip)!r}")
    return out


def export_bundle(bundle: str | os.PathLike, out_zip: str | os.PathLike, overwrite: bool = False) -> ExportedBundle:
    """Write a self-contained, model-zoo-style zip of a bundle (see the module docs for what is in it).

    The copy is staged in a temporary folder, zipped to a temporary name beside ``out_zip`` and
    renamed, so ``out_zip`` is either the old file or the complete new one.

    Args:
        bundle: name (see ``cseg bundles``) or folder of the bundle.
        out_zip: the zip to write (``.zip``), or a folder (existing, or a name ending in ``/``)
            to write ``NAME.zip`` into.
        overwrite: replace an existing ``out_zip``.

    Returns:
        What was written (:class:`ExportedBundle`; ``str()`` of it is a summary).

    Raises:
        ValueError: unknown bundle, bad ``out_zip``, bad metadata, or a config path that
            leaves the bundle (naming the file and the id).
        BundleExistsError: ``out_zip`` exists and ``overwrite`` is false.

    Example:
        ``export_bundle("isbi2012_em_membrane_segmentation", "dist/")`` writes
        ``dist/isbi2012_em_membrane_segmentation.zip`` (and returns its summary).
    """
    root = resolve_bundle(bundle)
    name = root.name
    target = _resolve_zip_target(out_zip, name)
    if target.exists() and not overwrite:
        raise BundleExistsError(f"{target} exists (pass overwrite=True / --overwrite to replace it)")
    meta = _metadata(root)
    if inference_config(root) is None:
        raise ValueError(f"{root}: no configs/inference.json (or .yaml/.yml)")
    digest = bundle_digest(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"cseg_export_{name}_") as stage:
        folder = Path(stage) / name
        folder.mkdir()
        rewrites, torchscript = _stage(root, folder)
        readme = folder / "docs" / "README.md"
        if readme.is_file():
            text = readme.read_text()
            text = text.split("\n" + EXPORT_SECTION + "\n", 1)[0].rstrip("\n") + "\n"  # a re-export replaces its notes
            readme.write_text(text + _export_notes(meta, digest, rewrites, torchscript, (folder / "eval").is_dir()))
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp_name, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.write(folder, f"{name}/")
                for path in sorted(folder.rglob("*")):
                    zf.write(path, path.relative_to(stage).as_posix() + ("/" if path.is_dir() else ""))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp made it private; a shared zip is not
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    return ExportedBundle(target, name, str(meta["version"]), digest, tuple(rewrites), torchscript)


def _zip_bundle_name(zip_path: Path, infos: list[zipfile.ZipInfo]) -> str:
    """The zip's one top-level folder, after checking every member stays inside it."""
    tops = set()
    for info in infos:
        member = info.filename
        parts = Path(member).parts
        if member.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", member) or ".." in parts or "\\" in member:
            raise ValueError(f"{zip_path}: member {member!r} would be written outside the bundle folder")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError(f"{zip_path}: member {member!r} is a symbolic link")
        tops.add(parts[0])
        if len(parts) == 1 and not info.is_dir():
            raise ValueError(f"{zip_path}: {member!r} lies at the top level; a bundle zip holds one folder named after the bundle")
    if len(tops) != 1:
        raise ValueError(f"{zip_path}: a bundle zip holds exactly one top-level folder, found {sorted(tops) or 'none'}")
    name = tops.pop()
    if f"{name}/configs/metadata.json" not in {i.filename for i in infos}:
        raise ValueError(f"{zip_path}: no {name}/configs/metadata.json: not a MONAI bundle")
    return name


def import_bundle(zip_path: str | os.PathLike, bundle_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Unpack a bundle zip (from :func:`export_bundle` or the model zoo) into ``BUNDLE_DIR/NAME``.

    Like ``python -m monai.bundle download --bundle_dir BUNDLE_DIR``: the zip's one top-level
    folder becomes ``BUNDLE_DIR/NAME``. It is extracted to a temporary folder inside
    ``bundle_dir`` and renamed into place, so ``BUNDLE_DIR/NAME`` is never half written.

    Args:
        zip_path: the zip file.
        bundle_dir: the folder that receives the bundle folder (created if missing).
        overwrite: replace an existing ``BUNDLE_DIR/NAME``.

    Returns:
        The bundle's folder.

    Raises:
        FileNotFoundError: no such zip.
        ValueError: not a zip, not exactly one top-level folder, no ``configs/metadata.json``,
            or a member that would land outside the folder (absolute, ``..``, a link).
        BundleExistsError: ``BUNDLE_DIR/NAME`` exists and ``overwrite`` is false.

    Example:
        ``import_bundle("dist/isbi2012_em_membrane_segmentation.zip", "my_bundles")`` returns
        ``my_bundles/isbi2012_em_membrane_segmentation``; run it with
        ``cseg infer my_bundles/isbi2012_em_membrane_segmentation IMAGES OUT``.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise FileNotFoundError(f"bundle zip {zip_path} does not exist")
    if not zipfile.is_zipfile(zip_path):
        raise ValueError(f"{zip_path}: not a zip file")
    with zipfile.ZipFile(zip_path) as zf:
        name = _zip_bundle_name(zip_path, zf.infolist())
        dest_root = Path(bundle_dir)
        target = dest_root / name
        if target.exists() and not overwrite:
            raise BundleExistsError(f"{target} exists (pass overwrite=True / --overwrite to replace it)")
        dest_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.import-", dir=dest_root))
        try:
            zf.extractall(staging)
            meta_file = staging / name / "configs" / "metadata.json"
            try:
                json.loads(meta_file.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{zip_path}: {name}/configs/metadata.json is not valid JSON ({err})") from err
            replaced = staging / ".replaced"  # the old folder, deleted with the staging folder
            if target.exists():
                os.replace(target, replaced)
            try:
                os.replace(staging / name, target)
            except OSError:
                if replaced.exists():
                    os.replace(replaced, target)
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
