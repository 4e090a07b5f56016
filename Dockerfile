# syntax=docker/dockerfile:1
# The course's single-user image for Zero to JupyterHub (docs/deploy-kubernetes.md). From the repository root:
#
#   docker build --target student    -t REGISTRY/deep-dive-convolutions:student-TAG .
#   docker build --target instructor -t REGISTRY/deep-dive-convolutions:instructor-TAG .
#
# The build context is filtered by .dockerignore, an allowlist: solutions/, graders/, tests/ and .git never
# reach any stage, so neither image holds a reference solution or a hidden grader. Instructors get those from
# the course volume (a checkout of this repository), which only their servers and the grading Job mount.
#
# Stages: build (runs scripts/setup.sh, the same install as on any machine) -> runtime (the installed course,
# no compilers, no npm) -> instructor (+ bubblewrap and the staff user) and student (the default target).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
# npm: setup.sh installs the site's vendored assets with `npm ci` (node only lives in this stage)
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
# For CPU-only nodes, --build-arg PIP_EXTRA_INDEX_URL=<PyTorch's CPU wheel index> keeps the CUDA libraries out.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
WORKDIR /opt/course
COPY . .
# The course is installed by its own script, nothing re-implemented here: .venv, `pip install -e .`,
# `npm ci`, the "python3" kernel. A change to scripts/setup.sh reaches the image with the next build.
RUN bash scripts/setup.sh
# jupyterhub-singleuser, the same version as the hub of the chart (Z2JH 4.4.0 runs JupyterHub 5.5.0);
# keep it equal to custom.course.singleuserJupyterhub in deploy/k8s/values.yaml. `pip check` fails the
# build if the course itself asks for another jupyterhub.
ARG JUPYTERHUB_VERSION=5.5.0
RUN .venv/bin/python -m pip install --quiet --disable-pip-version-check "jupyterhub==${JUPYTERHUB_VERSION}" \
 && .venv/bin/python -m pip check
# MNIST (mnist.npz), MNIST_SAMPLE and fastai's PNG folder layouts, fetched once here: user pods have no
# internet. Then verified as a pod will read them: offline, without fastai's download folder in $HOME.
# Without internet at build time, use --build-arg PREFETCH_DATA=0 and mount a data volume at
# /opt/course-data instead (the same files: see docs/deploy-kubernetes.md).
ARG PREFETCH_DATA=1
ENV COURSE_CACHE=/opt/course-data
RUN mkdir -p /opt/course-data \
 && if [ "$PREFETCH_DATA" = 1 ]; then \
      .venv/bin/course data prepare --quiet \
      && HOME=/tmp/as-in-a-pod COURSE_OFFLINE=1 .venv/bin/course data verify; \
    fi

# -------------------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
# tini reaps the kernels' orphans; Zero to JupyterHub keeps an image's ENTRYPOINT and replaces only its CMD
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
# jovyan (uid 1000, group users) is who Zero to JupyterHub runs servers as (singleuser.uid, fsGid 100);
# nbgrader names a jovyan's submissions after $JUPYTERHUB_USER.
RUN useradd --uid 1000 --gid 100 --create-home --shell /bin/bash jovyan
COPY --from=build /opt/course /opt/course
COPY --from=build /opt/course-data /opt/course-data
ENV PATH=/opt/course/.venv/bin:$PATH \
    VIRTUAL_ENV=/opt/course/.venv \
    COURSE_CACHE=/opt/course-data \
    COURSE_OFFLINE=1 \
    HOME=/home/jovyan
# The venv was built at the same path on the same base image; fail here, not at a student's first login
RUN jupyterhub-singleuser --version && course --version
WORKDIR /home/jovyan
ENTRYPOINT ["tini", "--"]
CMD ["jupyterhub-singleuser"]

# ----------------------------------------------------------------------------------------------------- instructor
FROM runtime AS instructor
# bubblewrap: `course grade` runs every submission in a bwrap sandbox (the grading Job runs this image)
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/*
# Staff servers run as this uid (custom.course.staffUid in deploy/k8s/values.yaml), so that nbgrader's
# exchange tells them from the students (jovyan) and can name the owner of what it creates.
RUN useradd --uid 1100 --gid 100 --home-dir /home/jovyan --no-create-home --shell /bin/bash instructor
USER 1100

# -------------------------------------------------------------------------------------------------------- student
# Last, so that a plain `docker build .` gives the student image.
FROM runtime AS student
USER 1000
