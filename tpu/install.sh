#!/usr/bin/env bash
# Puts jaxdl on every worker of a TPU VM and installs it into a venv. See tpu/README.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REPO_URL=""
SOURCE_DIR=""
PYTHON="${JAXDL_TPU_PYTHON:-python3.11}"

usage() {
	cat <<USAGE
Usage: tpu/install.sh --name NAME --zone ZONE [--repo URL | --source DIR] [--remote-dir DIR]
                      [--python PYTHON] [--project PROJECT] [--dry-run]

On every worker (--worker=all): gets the code into ~/REMOTE_DIR, creates ~/REMOTE_DIR/.venv and
runs \`pip install -e '.[tpu]'\` in it. Run it again to update the code and the install.

  --repo URL         git clone URL on each worker (a later run pulls with --ff-only);
                     default: this checkout's \`git remote get-url origin\`, if it has one
  --source DIR       copy DIR (default: this checkout, when it has no origin remote) as a tarball
                     with \`gcloud compute tpus tpu-vm scp --worker=all\`, without .git, .venv, runs/
  --remote-dir DIR   where the code goes on each worker, under ~ (\$JAXDL_TPU_REMOTE_DIR; default jaxdl)
  --python PYTHON    interpreter for the venv (\$JAXDL_TPU_PYTHON; default python3.11, jaxdl needs
                     3.11+); installed with apt-get when missing (TPU images run Ubuntu 22.04)

$COMMON_FLAGS_HELP

Next: tpu/launch.sh --name NAME --zone ZONE -- --config digits_cnn --workdir runs/digits_cnn
USAGE
}

script_flag() {
	case "$1" in
	--repo | --repo=*)
		flag_value "$@"
		REPO_URL="$VALUE"
		;;
	--source | --source=*)
		flag_value "$@"
		SOURCE_DIR="$VALUE"
		;;
	--remote-dir | --remote-dir=*)
		flag_value "$@"
		REMOTE_DIR="$VALUE"
		;;
	--python | --python=*)
		flag_value "$@"
		PYTHON="$VALUE"
		;;
	*) return 1 ;;
	esac
}

parse_args "$@"
require_target
[[ -z $REPO_URL || -z $SOURCE_DIR ]] || die "give --repo or --source, not both"
[[ $PYTHON =~ ^python3(\.[0-9]+)?$ ]] || die "--python '$PYTHON': give python3 or python3.N"
if [[ -z $REPO_URL && -z $SOURCE_DIR ]]; then
	REPO_URL="$(git -C "$REPO_ROOT" remote get-url origin 2>/dev/null || true)"
	if [[ -z $REPO_URL ]]; then
		SOURCE_DIR="$REPO_ROOT"
	fi
fi
if [[ -n $SOURCE_DIR ]]; then
	[[ -d $SOURCE_DIR ]] || die "--source '$SOURCE_DIR' is not a directory"
	[[ -f $SOURCE_DIR/pyproject.toml ]] || die "--source '$SOURCE_DIR' has no pyproject.toml"
	SOURCE_DIR="$(cd "$SOURCE_DIR" && pwd)"
fi

dir="$(shell_quote "$REMOTE_DIR")"
py="$(shell_quote "$PYTHON")"
# Each worker runs this with its login shell, so plain POSIX sh. The Ubuntu images' python3 is
# 3.10; the apt packages give 3.11 (and the venv module, which Ubuntu ships separately).
prepare="set -eu; cd ~; if ! $py -c 'import ensurepip, venv' >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $py $py-venv; fi"
setup="cd ~/$dir && { [ -x .venv/bin/python ] || $py -m venv .venv; } && .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[tpu]' && .venv/bin/python -c 'import jax, jaxdl; print(\"jaxdl installed, jax\", jax.__version__)'"

if [[ -n $REPO_URL ]]; then
	url="$(shell_quote "$REPO_URL")"
	tpu_ssh all "$prepare; if [ -d ~/$dir/.git ]; then git -C ~/$dir pull --ff-only; else git clone $url ~/$dir; fi; $setup"
else
	tarball="${TMPDIR:-/tmp}/jaxdl-src-$TPU_NAME.tar.gz"
	run tar -czf "$tarball" --exclude=./.git --exclude=./.venv --exclude=./runs \
		--exclude=__pycache__ --exclude='*.egg-info' --exclude=./.pytest_cache \
		--exclude=./.ruff_cache -C "$SOURCE_DIR" .
	run gcloud compute tpus tpu-vm scp "$tarball" "$TPU_NAME:jaxdl-src.tar.gz" \
		"${LOCATION_FLAGS[@]}" --worker=all
	tpu_ssh all "$prepare; mkdir -p ~/$dir && tar -xzf ~/jaxdl-src.tar.gz -C ~/$dir && rm ~/jaxdl-src.tar.gz; $setup"
	run rm -f "$tarball"
fi
note "next: tpu/launch.sh --name $TPU_NAME --zone $TPU_ZONE -- --config digits_cnn --workdir runs/digits_cnn"
