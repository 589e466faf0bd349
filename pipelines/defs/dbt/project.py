"""The dbt project and its manifest.

``prepare_manifest`` runs ``dbt parse`` when ``target/manifest.json`` is missing or older than
any file of the project (models, macros, tests, yml …), under a file lock. That is done when
the definitions are loaded (``dagster dev`` reloads, code servers, ``dg``, tests), so no manual
step is ever needed and a clean clone works; an unchanged project costs one directory walk.
``DbtProject.prepare_if_dev`` is not used because it only acts under ``dagster dev`` and
re-parses on every load. The ``DbtProject`` is made at load time too: it reads
``dbt_project.yml``, and importing the code location reads nothing.
"""

import contextlib
import fcntl
import os
import subprocess
from pathlib import Path

from dagster_dbt import DbtProject

from pipelines.build import DBT_PROJECT_DIR, dbt_executable
from pipelines.errors import TradelakeError

# Paths of a dbt project that are outputs, not sources, for the manifest's freshness.
_NOT_PROJECT_FILES = {"target", "logs", "dbt_packages"}


def dbt_project(project_dir: Path = DBT_PROJECT_DIR) -> DbtProject:
    """The dbt project in ``project_dir`` (default: the repository's ``dbt/``), its manifest current."""
    project = DbtProject(project_dir=project_dir)
    prepare_manifest(project)
    return project


def _newest_project_mtime(project_dir: Path) -> float:
    newest = (project_dir / "dbt_project.yml").stat().st_mtime
    for root, dirs, files in os.walk(project_dir):
        here = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (here == project_dir and d in _NOT_PROJECT_FILES)]
        newest = max(newest, here.stat().st_mtime)  # a deleted or renamed file changes its folder
        for f in files:
            if not f.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, (here / f).stat().st_mtime)
    return newest


def manifest_is_current(project: DbtProject) -> bool:
    manifest = project.manifest_path
    return manifest.exists() and manifest.stat().st_mtime >= _newest_project_mtime(project.project_dir)


def prepare_manifest(project: DbtProject) -> Path:
    """``dbt parse`` into the project's target path unless the manifest is newer than the project."""
    if manifest_is_current(project):
        return project.manifest_path
    target = project.project_dir / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".dagster-parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be parsing the same project
        if not manifest_is_current(project):
            env = {
                **os.environ,
                # profiles.yml and the sources read it; parsing opens no file under it.
                "TRADELAKE_HOME": os.environ.get("TRADELAKE_HOME") or str(target / "parse-home"),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            }
            done = subprocess.run(
                [
                    dbt_executable(),
                    "parse",
                    "--quiet",
                    "--project-dir",
                    str(project.project_dir),
                    "--profiles-dir",
                    str(project.profiles_dir),
                    "--target-path",
                    str(target),
                    "--log-path",
                    str(target),
                ],
                cwd=project.project_dir,
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0 or not project.manifest_path.exists():
                output = (done.stdout + done.stderr).strip().splitlines()[-20:]
                raise TradelakeError(f"dbt parse failed in {project.project_dir}:\n" + "\n".join(output))
    return project.manifest_path
