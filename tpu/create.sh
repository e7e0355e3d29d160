#!/usr/bin/env bash
# Creates a Cloud TPU VM (or requests one as a queued resource). See tpu/README.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
	cat <<USAGE
Usage: tpu/create.sh --name NAME --zone ZONE [--accelerator-type TYPE] [--version VERSION]
                     [--spot] [--queued] [--project PROJECT] [--dry-run]

Creates the TPU VM NAME with \`gcloud compute tpus tpu-vm create\`, or with --queued requests it
as a queued resource (\`gcloud compute tpus queued-resources create NAME --node-id=NAME\`), which
waits in a queue until capacity is free; \`gcloud compute tpus queued-resources describe NAME
--zone ZONE\` shows its state (ACTIVE once the VM exists).

  --accelerator-type TYPE  e.g. v4-8, v5litepod-8, v5p-8, v6e-8 (\$JAXDL_TPU_ACCELERATOR_TYPE; default v4-8)
  --version VERSION        TPU software (runtime) version (\$JAXDL_TPU_VERSION); default by type:
                           v6e: v2-alpha-tpuv6e, v5p: v2-alpha-tpuv5,
                           v5litepod: v2-alpha-tpuv5-lite, others: tpu-ubuntu2204-base
  --spot                   a Spot VM: cheaper, can be preempted at any time (\$JAXDL_TPU_SPOT=1)
  --queued                 request a queued resource (\$JAXDL_TPU_QUEUED=1)

$COMMON_FLAGS_HELP

Next: tpu/install.sh --name NAME --zone ZONE
USAGE
}

script_flag() {
	case "$1" in
	--accelerator-type | --accelerator-type=*)
		flag_value "$@"
		TPU_ACCELERATOR_TYPE="$VALUE"
		;;
	--version | --version=*)
		flag_value "$@"
		TPU_VERSION="$VALUE"
		;;
	--spot | --spot=*)
		no_value "$1"
		TPU_SPOT=1
		;;
	--queued | --queued=*)
		no_value "$1"
		TPU_QUEUED=1
		;;
	*) return 1 ;;
	esac
}

parse_args "$@"
require_target
[[ $TPU_ACCELERATOR_TYPE =~ ^v[0-9][a-z]*-[0-9]+$ ]] ||
	die "--accelerator-type '$TPU_ACCELERATOR_TYPE' is not a TPU type (e.g. v4-8, v5litepod-8)"
if [[ -z $TPU_VERSION ]]; then
	case "$TPU_ACCELERATOR_TYPE" in
	v6e-*) TPU_VERSION=v2-alpha-tpuv6e ;;
	v5p-*) TPU_VERSION=v2-alpha-tpuv5 ;;
	v5litepod-*) TPU_VERSION=v2-alpha-tpuv5-lite ;;
	*) TPU_VERSION=tpu-ubuntu2204-base ;;
	esac
fi
[[ $TPU_VERSION =~ ^[A-Za-z0-9._-]+$ ]] || die "--version '$TPU_VERSION' is not a runtime version"

spot_flags=()
if [[ $TPU_SPOT == 1 ]]; then
	spot_flags=(--spot)
fi

if [[ $TPU_QUEUED == 1 ]]; then
	run gcloud compute tpus queued-resources create "$TPU_NAME" "--node-id=$TPU_NAME" \
		"${LOCATION_FLAGS[@]}" "--accelerator-type=$TPU_ACCELERATOR_TYPE" \
		"--runtime-version=$TPU_VERSION" ${spot_flags[@]+"${spot_flags[@]}"}
	note "queued; check with: gcloud compute tpus queued-resources describe $TPU_NAME --zone=$TPU_ZONE"
else
	run gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION_FLAGS[@]}" \
		"--accelerator-type=$TPU_ACCELERATOR_TYPE" "--version=$TPU_VERSION" \
		${spot_flags[@]+"${spot_flags[@]}"}
fi
note "next: tpu/install.sh --name $TPU_NAME --zone $TPU_ZONE"
