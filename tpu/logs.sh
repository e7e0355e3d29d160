#!/usr/bin/env bash
# Follows the training log of one TPU worker. See tpu/README.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORKER=0
LINES=100

usage() {
	cat <<USAGE
Usage: tpu/logs.sh --name NAME --zone ZONE [--worker N] [--lines N] [--project PROJECT] [--dry-run]

Shows the last lines of $LOG_FILE_REMOTE on one worker and follows it (tail -F); Ctrl-C stops
following, not the training.

  --worker N   which worker (default 0)
  --lines N    how many earlier lines to show first (default 100)

$COMMON_FLAGS_HELP
USAGE
}

script_flag() {
	case "$1" in
	--worker | --worker=*)
		flag_value "$@"
		WORKER="$VALUE"
		;;
	--lines | --lines=*)
		flag_value "$@"
		LINES="$VALUE"
		;;
	*) return 1 ;;
	esac
}

parse_args "$@"
require_target
check_worker "$WORKER"
[[ $LINES =~ ^[0-9]+$ ]] || die "--lines '$LINES': give a number"
tpu_ssh "$WORKER" "tail -n $LINES -F $LOG_FILE_REMOTE"
