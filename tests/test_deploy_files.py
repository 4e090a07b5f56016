"""The files for Kubernetes: the image recipe and its build context, the Zero to JupyterHub values, the manifests.

Nothing here needs Docker, Helm or a cluster; docs/deploy-kubernetes.md says what was never run. Checked: the files
parse; the values use only keys of the chart's schema; the image installs the course with scripts/setup.sh and its
build context lets no solution through; the role configurations and the staff override do what they claim when
traitlets and JupyterHub's override rules run them; and the files agree with each other.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
import yaml
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
DOCS_PAGE = ROOT / "docs" / "deploy-kubernetes.md"

# Zero to JupyterHub chart version -> the JupyterHub its hub image runs, from the chart's changelog
# (jupyterhub/zero-to-jupyterhub-k8s, docs/source/changelog.md). Chart 3.x ran JupyterHub 4.
CHART_HUB = {
    "4.0.0": "5.2.1", "4.1.0": "5.2.1", "4.2.0": "5.3.0", "4.3.0": "5.4.0", "4.3.1": "5.4.1",
    "4.3.2": "5.4.3", "4.3.3": "5.4.4", "4.3.4": "5.4.5", "4.3.5": "5.4.6", "4.4.0": "5.5.0",
}  # fmt: skip


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((K8S / "values.yaml").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[str, list[dict]]:
    return {
        p.name: list(yaml.safe_load_all(p.read_text())) for p in sorted(K8S.glob("*.yaml")) if p.name != "values.yaml"
    }


def of_kind(manifests: dict, kind: str) -> list[dict]:
    return [d for docs in manifests.values() for d in docs if d["kind"] == kind]


def container(job: dict) -> dict:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


# ------------------------------------------------------------------------------------------------- the chart's keys
# A subset of the chart's values schema (jupyterhub/values.schema.yaml in zero-to-jupyterhub-k8s), transcribed: every
# top-level key and every key of the sections this course sets; sections the course leaves alone accept anything.
# Using a key the chart added later? Copy its entry from the chart's schema.
ANY: dict = {}
OPEN = {"type": "object"}
STR, INT, NUM, BOOL, ARR = ({"type": t} for t in ("string", "integer", "number", "boolean", "array"))
LIST_OR_DICT = {"type": ["array", "object", "null"]}  # chart 4.3.0 also takes dicts for volume lists


def obj(*names: str, required=(), **props) -> dict:
    """A closed object: the keys ``names`` (any value) and ``props`` (with their schema), nothing else."""
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": dict.fromkeys(names, ANY) | props}  # fmt: skip


IMAGE = obj(
    "pullSecrets",
    required=("name", "tag"),
    name=STR,
    tag=STR,
    pullPolicy={"enum": [None, "", "IfNotPresent", "Always", "Never"]},
)
NETWORK_POLICY = obj(
    "ingress", "egress", "allowedIngressPorts", "interNamespaceAccessLabels", enabled=BOOL,
    egressAllowRules=obj(**dict.fromkeys(("cloudMetadataServer", "dnsPortsCloudMetadataServer", "nonPrivateIPs",
                                          "dnsPortsKubeSystemNamespace", "dnsPortsPrivateIPs", "privateIPs"), BOOL)),
)  # fmt: skip
EXTRA_FILE = obj(
    required=("mountPath",), mountPath={"type": "string", "pattern": "^/"}, data=OPEN, stringData=STR, binaryData=STR,
    mode=NUM,
) | {"oneOf": [{"required": [k]} for k in ("data", "stringData", "binaryData")]}  # fmt: skip
HUB = obj(
    "revisionHistoryLimit", "baseUrl", "command", "args", "cookieSecret", "image", "db", "labels", "initContainers",
    "extraEnv", "fsGid", "service", "pdb", "existingSecret", "nodeSelector", "tolerations", "activeServerLimit",
    "allowNamedServers", "annotations", "authenticatePrometheus", "concurrentSpawnLimit", "consecutiveFailureLimit",
    "podSecurityContext", "containerSecurityContext", "deploymentStrategy", "extraContainers", "extraVolumeMounts",
    "extraVolumes", "livenessProbe", "readinessProbe", "namedServerLimitPerUser", "redirectToServer", "resources",
    "lifecycle", "services", "loadRoles", "shutdownOnLogout", "templatePaths", "templateVars", "serviceAccount",
    "extraPodSpec", "extraFiles", networkPolicy=NETWORK_POLICY,
    # hub.config's sections are traitlets class names (chart 4.3.0 began refusing invalid top-level keys there)
    config={"type": "object", "propertyNames": {"pattern": "^[A-Z][A-Za-z0-9]*$"}, "additionalProperties": OPEN},
    extraConfig={"type": "object", "additionalProperties": STR},
)  # fmt: skip
SINGLEUSER = obj(
    "podNameTemplate", "initContainers", "profileList", "nodeSelector", "extraTolerations", "extraNodeAffinity",
    "extraPodAffinity", "extraPodAntiAffinity", "cloudMetadata", "events", "extraAnnotations", "extraContainers",
    "extraLabels", "extraResource", "lifecycleHooks", "networkTools", "serviceAccountName", "allowPrivilegeEscalation",
    image=IMAGE, networkPolicy=NETWORK_POLICY, uid={"type": ["integer", "null"]}, fsGid={"type": ["integer", "null"]},
    cmd={"type": ["array", "string", "null"]}, defaultUrl=STR, startTimeout=INT, extraPodConfig=OPEN,
    extraEnv={"type": ["object", "array"]}, extraFiles={"type": "object", "additionalProperties": EXTRA_FILE},
    cpu=obj(limit={"type": ["number", "null"]}, guarantee={"type": ["number", "null"]}),
    memory=obj(limit={"type": ["number", "string", "null"]}, guarantee={"type": ["number", "string", "null"]}),
    storage=obj(
        "extraLabels", required=("type", "homeMountPath"), type={"enum": ["dynamic", "static", "none"]},
        homeMountPath=STR, capacity={"type": ["string", "null"]}, extraVolumes=LIST_OR_DICT,
        extraVolumeMounts=LIST_OR_DICT, static=obj("pvcName", "subPath"),
        dynamic=obj("pvcNameTemplate", "storageAccessModes", "storageClass", "volumeNameTemplate"),
    ),
)  # fmt: skip
VALUES_SCHEMA = obj(
    "enabled", "fullnameOverride", "nameOverride", "imagePullSecret", "imagePullSecrets", "global",
    "httpRoute",  # chart 4.3.0
    hub=HUB, singleuser=SINGLEUSER, custom=OPEN, debug=obj("enabled"), rbac=obj("enabled", "create"),
    ingress=obj("enabled", "annotations", "ingressClassName", "hosts", "pathSuffix", "pathType", "tls"),
    proxy=obj("chp", "secretToken", "service", "traefik", "labels", "annotations", "deploymentStrategy", "secretSync",
              https=obj("enabled", "type", "letsencrypt", "manual", "secret", "hosts")),
    cull=obj(enabled=BOOL, users=BOOL, adminUsers=BOOL, removeNamedServers=BOOL, timeout=INT, every=INT,
             concurrency=INT, maxAge=INT),
    scheduling=obj(
        userScheduler=obj("enabled", "revisionHistoryLimit", "replicas", "image", "pdb", "nodeSelector", "tolerations",
                          "labels", "annotations", "containerSecurityContext", "logLevel", "plugins", "pluginConfig",
                          "resources", "serviceAccount", "extraPodSpec"),
        podPriority=obj("enabled", "globalDefault", "defaultPriority", "imagePullerPriority",
                        "userPlaceholderPriority"),
        userPlaceholder=obj("enabled", "image", "revisionHistoryLimit", "replicas", "labels", "annotations",
                            "resources", "containerSecurityContext"),
        corePods=obj("tolerations", "nodeAffinity"), userPods=obj("tolerations", "nodeAffinity"),
    ),
    prePuller=obj("revisionHistoryLimit", "labels", "annotations", "resources", "extraTolerations", "hook",
                  "continuous", "pullProfileListImages", "containerSecurityContext", "pause",
                  extraImages={"type": "object", "additionalProperties": IMAGE}),
)  # fmt: skip


def test_values_and_manifests_parse(values, manifests):
    assert {"hub", "singleuser", "custom"} <= set(values)
    assert set(manifests) == {"course-resources.yaml", "grading-job.yaml"}
    for name, docs in manifests.items():
        for doc in docs:
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(doc), name
            assert doc["metadata"].get("name") or doc["metadata"].get("generateName"), name


def test_values_use_only_the_charts_keys(values):
    jsonschema.validate(values, VALUES_SCHEMA)
    two_contents = {"x": {"mountPath": "/etc/x", "data": {}, "stringData": ""}}
    for typo in ({"singleuser": {"memory": {"limits": "4G"}}}, {"singleuser": {"storage": {"extraVolume": []}}},
                 {"hub": {"config": {"c.JupyterHub": {}}}}, {"culling": {"enabled": True}},
                 {"singleuser": {"extraFiles": two_contents}}):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(typo, VALUES_SCHEMA)


# ------------------------------------------------------------------------------------------------------- the image
@dataclass
class Stage:
    name: str
    base: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, op: str) -> list[str]:
        return [a for o, a in self.steps if o == op]


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(ARGs before the first FROM, the stages): continuation lines joined and comments dropped, as Docker does."""
    lines, pending = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            pending += s[:-1].rstrip() + " "
            continue
        lines.append(pending + s)
        pending = ""
    global_args, stages = {}, []
    for line in lines:
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert m, f"every stage is named: FROM {rest}"
            stages.append(Stage(m[2], m[1]))
        elif stages:
            stages[-1].steps.append((op, rest))
        elif op == "ARG":
            k, _, v = rest.partition("=")
            global_args[k] = v
    return global_args, stages


@pytest.fixture(scope="module")
def image() -> dict[str, Stage]:
    _, stages = dockerfile_stages((ROOT / "Dockerfile").read_text())
    return {s.name: s for s in stages}


def arg_default(stage: Stage, name: str) -> str:
    (value,) = [a.partition("=")[2] for a in stage.args("ARG") if a.partition("=")[0] == name]
    return value


def env(stage: Stage) -> dict[str, str]:
    out = {}
    for a in stage.args("ENV"):
        out |= dict(re.findall(r"(\w+)=(\S+)", a))
    return out


def test_dockerfile_parser_on_a_hand_written_file():
    text = "# syntax=docker/dockerfile:1\nARG BASE=python:3.11\nFROM ${BASE} AS one\nRUN a \\\n  # note\n  && b\n"
    args, stages = dockerfile_stages(text + "FROM one AS two\nUSER 1000\n")
    assert args == {"BASE": "python:3.11"}
    assert [(s.name, s.base, s.steps) for s in stages] == [
        ("one", "${BASE}", [("RUN", "a && b")]),
        ("two", "one", [("USER", "1000")]),
    ]


def test_image_installs_the_course_with_the_setup_script(image):
    build = image["build"]
    setup = build.steps.index(("RUN", "bash scripts/setup.sh"))
    copied = build.steps.index(("COPY", ". ."))  # the whole (filtered) context, into the WORKDIR set before it
    assert copied < setup and [a for op, a in build.steps[:copied] if op == "WORKDIR"][-1] == "/opt/course"
    # nothing of the install is done a second way here: it stays the script's job
    twice = re.compile(r"pip install (-e|--editable)|npm (ci|install)|ipykernel install|-m venv")
    assert not [a for s in image.values() for a in s.args("RUN") if twice.search(a)]
    assert "npm ci" in (ROOT / "scripts" / "setup.sh").read_text()  # why the build stage installs npm
    assert re.search(r"apt-get install .*\bnpm\b", " ".join(build.args("RUN")))


def test_image_stages_users_and_tools(image, values):
    assert list(image) == ["build", "runtime", "instructor", "student"]  # student last: the default target
    # the venv is copied from build to runtime, so both start from the same Python, one the course supports
    assert image["build"].base == image["runtime"].base == "${PYTHON_IMAGE}"
    base, _ = dockerfile_stages((ROOT / "Dockerfile").read_text())
    python = re.fullmatch(r"python:(\d+\.\d+)-\S+", base["PYTHON_IMAGE"])[1]
    from packaging.specifiers import SpecifierSet

    assert python in SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    assert image["student"].base == image["instructor"].base == "runtime"
    for name in ("runtime", "instructor", "student"):  # only the build stage reads the build context
        assert all(a.startswith("--from=build ") for a in image[name].args("COPY")), name
    assert image["student"].args("USER") == [str(values["singleuser"]["uid"])] == ["1000"]
    assert image["instructor"].args("USER") == [str(values["custom"]["course"]["staffUid"])]
    staff_user = f"useradd --uid {values['custom']['course']['staffUid']} --gid {values['singleuser']['fsGid']} "
    assert re.search(staff_user + r".* instructor$", " ".join(image["instructor"].args("RUN")))
    installs = {name: " ".join(s.args("RUN")) for name, s in image.items()}
    assert "bubblewrap" in installs["instructor"] and "bubblewrap" not in installs["runtime"]  # grading only
    assert image["runtime"].args("CMD") == ['["jupyterhub-singleuser"]'] == [f'["{values["singleuser"]["cmd"]}"]']


def test_image_carries_the_data_and_stays_offline(image):
    build, runtime = image["build"], image["runtime"]
    cache = env(build)["COURSE_CACHE"]
    assert env(runtime)["COURSE_CACHE"] == cache and env(runtime)["COURSE_OFFLINE"] == "1"
    assert f"--from=build {cache} {cache}" in runtime.args("COPY")
    # prepared, then checked offline without fastai's own download folder: what a pod will have
    data_step = r"course data prepare .*HOME=\S+ COURSE_OFFLINE=1 \S*course data verify"
    assert re.search(data_step, " ".join(build.args("RUN")))
    assert env(runtime)["PATH"].startswith("/opt/course/.venv/bin:")


# ---------------------------------------------------------------------------------------- the image's build context
def ignore_rules(text: str) -> list[tuple[bool, re.Pattern]]:
    """.dockerignore as Docker reads it: (is an exception, pattern), in order."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negate else line).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            else:
                regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
                i += 1
        rules.append((negate, re.compile(regex)))
    return rules


def ignored(path: str, rules) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    out = False
    for negate, rx in rules:
        if any(rx.fullmatch(p) for p in prefixes):
            out = not negate
    return out


def test_ignore_rules_on_hand_written_patterns():
    rules = ignore_rules("# allowlist\n*\n!keep/\n!/top.txt\n**/junk\n")
    assert [p for p in ("keep/a.py", "drop/a.py", "top.txt", "other.txt", "keep/junk/b", "keep/x/junk")
            if not ignored(p, rules)] == ["keep/a.py", "top.txt"]  # fmt: skip


def build_context() -> set[str]:
    """Files of this checkout that `docker build .` would send (.git, .venv and node_modules are not walked)."""
    rules = ignore_rules((ROOT / ".dockerignore").read_text())
    sent = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", "node_modules")]
        for f in filenames:
            rel = Path(dirpath, f).relative_to(ROOT).as_posix()
            if not ignored(rel, rules):
                sent.add(rel)
    return sent


def test_build_context_holds_no_solution_and_all_the_install_needs():
    sent = build_context()
    assert not [p for p in sent if p.split("/")[0] in ("solutions", "graders", "tests", ".git", "deploy")]
    notebooks = [p for p in sent if p.endswith(".ipynb")]
    assert notebooks and all(p.startswith("exercises/") for p in notebooks)
    assert not [p for p in notebooks if "### BEGIN SOLUTION" in (ROOT / p).read_text()]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"scripts/setup.sh", "pyproject.toml", pyproject["project"]["readme"], "package.json", "package-lock.json"}
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "course").rglob("*") if p.is_file()}
    needed |= {p for p in package if "__pycache__" not in p}  # the package and its data (course/assets/)
    assert needed <= sent, sorted(needed - sent)
    rules = ignore_rules((ROOT / ".dockerignore").read_text())
    never = ["solutions/01_kernels/01_kernels.ipynb", "graders/reference/manifest.json", ".git/config", "tests/x.py",
             "gradebook.db", "submitted/ada/01_kernels/01_kernels.ipynb", "autograded/ada/x", "feedback/ada/x",
             "graded/grades.csv", ".venv/bin/python", "node_modules/mathjax/package.json", ".hub/hub/passwords.json",
             "course/__pycache__/data.cpython-311.pyc", "exercises/01_kernels/.ipynb_checkpoints/x.ipynb"]  # fmt: skip
    assert [p for p in never if not ignored(p, rules)] == []


# ---------------------------------------------------------------------------------------------------------- versions
def chart_versions() -> set[str]:
    texts = [(K8S / "values.yaml").read_text(), DOCS_PAGE.read_text()]
    return {v for t in texts for v in re.findall(r"--version (\d+\.\d+\.\d+)", t)}


def test_image_jupyterhub_matches_the_charts_hub(image, values):
    (chart,) = chart_versions()  # one chart version everywhere
    pinned = arg_default(image["build"], "JUPYTERHUB_VERSION")
    assert pinned == str(values["custom"]["course"]["singleuserJupyterhub"])
    assert pinned.split(".")[:2] == CHART_HUB[chart].split(".")[:2], f"chart {chart} runs JupyterHub {CHART_HUB[chart]}"
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "jupyterhub"]
    assert all(r.specifier.contains(pinned) for r in wanted), f"the course asks for {wanted}, the image pins {pinned}"


# ---------------------------------------------------------------------------------------------- role configuration
def extra_file(values: dict, key: str) -> dict:
    return values["singleuser"]["extraFiles"][key]


def load_py_config(path: Path) -> Config:
    return PyFileConfigLoader(path.name, str(path.parent)).load_config()


def exchange_mount(values: dict) -> str:
    (mount,) = [m["mountPath"] for m in values["singleuser"]["storage"]["extraVolumeMounts"] if "exchange" in m["name"]]
    return mount


def test_student_config_names_the_student_and_the_exchange(values, tmp_path, monkeypatch):
    f = extra_file(values, "student-nbgrader")
    assert f["mountPath"].startswith(values["singleuser"]["extraEnv"]["JUPYTER_CONFIG_PATH"] + "/")
    (tmp_path / "nbgrader_config.py").write_text(f["stringData"])
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    c = load_py_config(tmp_path / "nbgrader_config.py")
    assert c.CourseDirectory.student_id == "ada" and c.Exchange.root == exchange_mount(values)
    assert c.CourseDirectory.course_id == "deep-dive-convolutions"


def test_staff_config_reads_the_course_checkout(values, tmp_path):
    course = values["custom"]["course"]
    f = extra_file(values, "staff-nbgrader")
    assert f["mountPath"].startswith(course["staffConfigPath"] + "/")
    checkout = tmp_path / "course"
    checkout.mkdir()
    (tmp_path / "nbgrader_config.py").write_text(f["stringData"].replace(course["courseMountPath"], str(checkout)))
    c = load_py_config(tmp_path / "nbgrader_config.py")  # the checkout is not there yet: the server still starts
    assert c.CourseDirectory.root == str(checkout) and "source_directory" not in c.CourseDirectory
    (checkout / "nbgrader_config.py").write_text((ROOT / "nbgrader_config.py").read_text())
    c = load_py_config(tmp_path / "nbgrader_config.py")
    assert (c.CourseDirectory.source_directory, c.CourseDirectory.release_directory) == ("solutions", "exercises")
    assert c.CourseDirectory.root == str(checkout) and c.Exchange.root == exchange_mount(values)
    assert c.ExchangeCollect.check_owner is False and "student_id" not in c.CourseDirectory  # staff collect everyone


def test_students_do_not_get_the_instructor_tools(values):
    server = extra_file(values, "student-server")["data"]["ServerApp"]["jpserver_extensions"]
    assert server == {"nbgrader.server_extensions.formgrader": False, "nbgrader.server_extensions.course_list": False}
    lab = extra_file(values, "student-lab")["data"]["disabledExtensions"]
    assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= {k for k, on in lab.items() if on}
    staff_dir = values["custom"]["course"]["staffConfigPath"]
    staff_files = [
        f["mountPath"] for f in values["singleuser"]["extraFiles"].values() if f["mountPath"].startswith(staff_dir)
    ]
    assert staff_files == [f"{staff_dir}/nbgrader_config.py"]  # staff keep every nbgrader extension


# --------------------------------------------------------------------------------------------------- staff servers
def apply_override(spawner, override: dict) -> None:
    """JupyterHub's Spawner._apply_overrides (5.1+): callables are called with the spawner, dicts merge into dicts."""
    for key, value in override.items():
        value = value(spawner) if callable(value) else value
        if isinstance(value, dict) and isinstance(getattr(spawner, key), dict):
            getattr(spawner, key).update(value)
        else:
            setattr(spawner, key, value)


def run_extra_config(values: dict, hub_version: str, monkeypatch) -> Config:
    """hub.extraConfig as the hub pod runs it, with z2jh's get_config reading these values."""

    def get_config(key, default=None):
        node = values
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    monkeypatch.setitem(sys.modules, "z2jh", types.SimpleNamespace(get_config=get_config))
    monkeypatch.setitem(sys.modules, "jupyterhub", types.SimpleNamespace(__version__=hub_version))
    c = Config()
    for name, code in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(code, name, "exec"), {"c": c}, {})  # own locals: the override must not need module globals
    return c


def test_staff_servers_get_the_course_folder_once(values, manifests, monkeypatch, capsys):
    course = values["custom"]["course"]
    (override,) = run_extra_config(values, "5.5.4", monkeypatch).KubeSpawner.group_overrides.values()
    assert capsys.readouterr().err == ""  # the hub's version matches the image's
    assert override["groups"] == course["staffGroups"] == list(values["hub"]["config"]["JupyterHub"]["load_groups"])
    storage, su = values["singleuser"]["storage"], values["singleuser"]
    spawner = types.SimpleNamespace(
        volumes=[{"name": "home"}, *storage["extraVolumes"]], environment=dict(su["extraEnv"]), extra_labels={},
        volume_mounts=[{"name": "home"}, *storage["extraVolumeMounts"]], uid=su["uid"], image="student:tag",
    )  # fmt: skip
    before = (list(spawner.volumes), list(spawner.volume_mounts))
    for _ in range(2):  # a staff member's second start must not mount the folder twice
        apply_override(spawner, override["spawner_override"])
    (claim,) = [
        d["metadata"]["name"]
        for d in of_kind(manifests, "PersistentVolumeClaim")
        if d["metadata"]["name"] == course["courseClaim"]
    ]
    assert spawner.volumes == [*before[0], {"name": "course-dir", "persistentVolumeClaim": {"claimName": claim}}]
    assert spawner.volume_mounts == [*before[1], {"name": "course-dir", "mountPath": course["courseMountPath"]}]
    assert spawner.environment == su["extraEnv"] | {"JUPYTER_CONFIG_PATH": course["staffConfigPath"]}
    assert spawner.uid == course["staffUid"] and spawner.image == "{name}:{tag}".format(**course["staffImage"])
    assert course["staffImage"] in values["prePuller"]["extraImages"].values()
    run_extra_config(values, "6.1.1", monkeypatch)
    assert "jupyterhub 5.5.0 but this hub runs 6.1.1" in capsys.readouterr().err


def test_student_servers_never_mount_the_course_folder(values):
    course, su = values["custom"]["course"], values["singleuser"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in su["storage"]["extraVolumes"] if "persistentVolumeClaim" in v
    ]
    assert course["courseClaim"] not in claims and claims == ["nbgrader-exchange"]
    mounts = [m["mountPath"] for m in su["storage"]["extraVolumeMounts"]] + [
        f["mountPath"] for f in su["extraFiles"].values()
    ]
    assert not [m for m in mounts if m.startswith(course["courseMountPath"])]
    assert su["extraPodConfig"]["automountServiceAccountToken"] is False  # no Kubernetes API token in any server


# ----------------------------------------------------------------------------------- logins, limits and the network
def test_logins_go_through_single_sign_on_with_an_allow_rule(values):
    cfg = values["hub"]["config"]
    assert cfg["JupyterHub"]["authenticator_class"] in (
        "oauthenticator.generic.GenericOAuthenticator", "ltiauthenticator.lti13.auth.LTI13Authenticator")  # fmt: skip
    auth = cfg["Authenticator"]
    allowed = set(auth.get("allowed_users", [])) | set(auth.get("admin_users", []))
    assert allowed or auth.get("allow_all"), "without an allow rule JupyterHub refuses every login"
    staff = {u for g in cfg["JupyterHub"]["load_groups"].values() for u in g["users"]}
    assert staff <= allowed or auth.get("allow_all")

    def secrets(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from secrets(v, f"{path}.{k}")
                if re.search(r"(secret|password|api_?token|secret_?token|crypt_?key)$", k, re.IGNORECASE) and v:
                    yield f"{path}.{k}"

    assert list(secrets(values)) == []  # they belong in secrets.yaml, not in the repository


def memory_bytes(q) -> float:
    m = re.fullmatch(r"([\d.]+)\s*([KMGT]i?)?", str(q))
    scale = {None: 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return float(m[1]) * scale[m[2]]


def test_limits_and_threads_per_student(values):
    su = values["singleuser"]
    assert 0 < su["cpu"]["guarantee"] <= su["cpu"]["limit"]
    assert 0 < memory_bytes(su["memory"]["guarantee"]) <= memory_bytes(su["memory"]["limit"])
    assert su["extraEnv"]["OMP_NUM_THREADS"] == su["extraEnv"]["MKL_NUM_THREADS"] == str(su["cpu"]["limit"])


def test_student_pods_reach_no_internet(values):
    policy = values["singleuser"]["networkPolicy"]
    assert policy["enabled"] is True and not policy.get("egress")
    assert {k: policy["egressAllowRules"][k] for k in ("nonPrivateIPs", "privateIPs", "cloudMetadataServer")} == {
        "nonPrivateIPs": False, "privateIPs": False, "cloudMetadataServer": False}  # fmt: skip


# ------------------------------------------------------------------------------------------ volumes and grading job
def test_shared_volumes_and_their_permissions(values, manifests):
    course = values["custom"]["course"]
    claims = {d["metadata"]["name"]: d for d in of_kind(manifests, "PersistentVolumeClaim")}
    assert set(claims) == {"nbgrader-exchange", course["courseClaim"]}
    assert all(d["spec"]["accessModes"] == ["ReadWriteMany"] for d in claims.values())
    (init,) = [j for j in of_kind(manifests, "Job") if j["metadata"].get("name") == "course-storage-init"]
    mounts = {m["name"]: m["mountPath"] for m in container(init)["volumeMounts"]}
    by_claim = {
        v["persistentVolumeClaim"]["claimName"]: mounts[v["name"]] for v in init["spec"]["template"]["spec"]["volumes"]
    }
    script = " ".join(container(init)["args"])
    assert (
        by_claim["nbgrader-exchange"] == exchange_mount(values)
        and by_claim[course["courseClaim"]] == course["courseMountPath"]
    )
    assert f"chmod 0777 {by_claim['nbgrader-exchange']}" in script
    assert f"chown {course['staffUid']}:{values['singleuser']['fsGid']} {by_claim[course['courseClaim']]}" in script


def test_grading_job_runs_course_grade_sealed_off(values, manifests):
    course = values["custom"]["course"]
    (job,) = [j for j in of_kind(manifests, "Job") if j["metadata"].get("generateName") == "course-grade-"]
    pod, box = job["spec"]["template"]["spec"], container(job)
    assert box["image"] == "{name}:{tag}".format(**course["staffImage"])  # the image with bubblewrap
    assert (
        box["securityContext"] == {"privileged": True, "runAsUser": 0} and pod["automountServiceAccountToken"] is False
    )
    assert pod["restartPolicy"] == "Never" and pod["nodeSelector"] and pod["tolerations"]
    script = box["args"][0]
    assert re.search(r"^course grade submitted .*--gradebook sqlite:///gradebook\.db$", script, re.MULTILINE)
    assert f"chown -R {course['staffUid']}:" in script
    (volume,) = pod["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == course["courseClaim"]
    assert box["volumeMounts"] == [{"name": volume["name"], "mountPath": course["courseMountPath"]}]
    assert box["workingDir"] == course["courseMountPath"]
    (policy,) = of_kind(manifests, "NetworkPolicy")
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]  # no rule: nothing allowed


def test_the_guide_covers_every_file():
    text = DOCS_PAGE.read_text()
    for path in ("Dockerfile", ".dockerignore", *(f"deploy/k8s/{p.name}" for p in K8S.glob("*.yaml"))):
        assert f"`{path}`" in text, path
    assert "## What was not run here" in text


def test_every_site_plugin_comes_with_the_runtime_install():
    """`bash scripts/setup.sh` installs only the runtime dependencies, and `course up` builds the site with them."""
    from importlib.metadata import entry_points

    from packaging.requirements import Requirement

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # mkdocs.yml's !!python/!ENV tags
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    names = [next(iter(p)) if isinstance(p, dict) else p for p in config["plugins"]]

    def canonical(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    providers = {ep.name: canonical(ep.dist.name) for ep in entry_points(group="mkdocs.plugins")}
    for name, dist in list(providers.items()):  # Material's plugins also answer to their short names
        providers.setdefault(name.removeprefix("material/"), dist)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = {canonical(Requirement(r).name) for r in deps}
    missing = {n: providers.get(n) for n in names if providers.get(n) not in runtime}
    assert len(names) >= 5 and not missing, f"plugins whose package is not a runtime dependency: {missing}"
