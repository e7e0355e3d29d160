#!/usr/bin/env bash
# Deletes a TPU VM (or its queued resource). See tpu/README.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

YES=0

usage() {
	cat <<USAGE
Usage: tpu/delete.sh --name NAME --zone ZONE --yes [--queued] [--project PROJECT] [--dry-run]

Deletes the TPU VM NAME and its disk, with everything on it: fetch runs first (tpu/fetch.sh).
With --queued, deletes the queued resource NAME made by \`tpu/create.sh --queued\`, and its VM
(--force). --yes is required, except with --dry-run.

  --yes      really delete
  --queued   it was created as a queued resource (\$JAXDL_TPU_QUEUED=1)

$COMMON_FLAGS_HELP
USAGE
}

script_flag() {
	case "$1" in
	--yes | --yes=*)
		no_value "$1"
		YES=1
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
((YES || DRY_RUN)) || die "deleting $TPU_NAME loses everything on it; pass --yes to confirm (or --dry-run)"
if [[ $TPU_QUEUED == 1 ]]; then
	run gcloud compute tpus queued-resources delete "$TPU_NAME" "${LOCATION_FLAGS[@]}" --force --quiet
else
	run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION_FLAGS[@]}" --quiet
fi
