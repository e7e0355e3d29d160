#!/usr/bin/env bash
# Copies a run's workdir back from a TPU worker. See tpu/README.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORKDIR=""
DEST=""
WORKER=0

usage() {
	cat <<USAGE
Usage: tpu/fetch.sh --name NAME --zone ZONE --workdir WORKDIR --to DIR [--worker N]
                    [--remote-dir DIR] [--project PROJECT] [--dry-run]

Copies WORKDIR from a worker (default 0) into DIR, as DIR/\$(basename WORKDIR), with
\`gcloud compute tpus tpu-vm scp --recurse\`. A relative WORKDIR is relative to ~/REMOTE_DIR,
as for tpu/launch.sh.

  --workdir WORKDIR  the --workdir given to jaxdl train, e.g. runs/digits_cnn
  --to DIR           local directory to copy into (created if missing)
  --worker N         which worker (default 0)
  --remote-dir DIR   the checkout on the worker, under ~ (\$JAXDL_TPU_REMOTE_DIR; default jaxdl)

$COMMON_FLAGS_HELP
USAGE
}

script_flag() {
	case "$1" in
	--workdir | --workdir=*)
		flag_value "$@"
		WORKDIR="$VALUE"
		;;
	--to | --to=*)
		flag_value "$@"
		DEST="$VALUE"
		;;
	--worker | --worker=*)
		flag_value "$@"
		WORKER="$VALUE"
		;;
	--remote-dir | --remote-dir=*)
		flag_value "$@"
		REMOTE_DIR="$VALUE"
		;;
	*) return 1 ;;
	esac
}

parse_args "$@"
require_target
check_worker "$WORKER"
[[ -n $WORKDIR ]] || die "--workdir is required (the run's --workdir, e.g. runs/digits_cnn)"
[[ -n $DEST ]] || die "--to is required (a local directory)"
[[ $WORKDIR =~ ^[A-Za-z0-9._/~-]+$ && $WORKDIR != *..* ]] ||
	die "--workdir '$WORKDIR': use letters, digits and . _ - / only, and no .."
while [[ $WORKDIR == */ && $WORKDIR != / ]]; do
	WORKDIR="${WORKDIR%/}"
done
case "$WORKDIR" in
/*) remote_path="$WORKDIR" ;;         # absolute
\~/*) remote_path="${WORKDIR#\~/}" ;; # scp paths are relative to the home directory
*) remote_path="$REMOTE_DIR/$WORKDIR" ;;
esac
run mkdir -p "$DEST"
run gcloud compute tpus tpu-vm scp --recurse "$TPU_NAME:$remote_path" "$DEST" \
	"${LOCATION_FLAGS[@]}" "--worker=$WORKER"
note "copied to $DEST/$(basename "$WORKDIR")"
