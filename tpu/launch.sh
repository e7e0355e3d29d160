#!/usr/bin/env bash
# Starts `jaxdl train ARGS` on every worker of a TPU VM, in the background. See tpu/README.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ALLOW_REST=1

usage() {
	cat <<USAGE
Usage: tpu/launch.sh --name NAME --zone ZONE [--remote-dir DIR] [--project PROJECT] [--dry-run]
                     -- JAXDL_TRAIN_ARGS...

Runs \`.venv/bin/jaxdl train JAXDL_TRAIN_ARGS\` in ~/REMOTE_DIR on every worker at once, under
nohup, appending its output to $LOG_FILE_REMOTE on each worker, and returns. On a TPU VM,
multi-host included, jaxdl needs no distributed flags: JAX finds the other workers itself.
A relative --workdir is relative to ~/REMOTE_DIR. Exit codes land in the log: 0 done, 2 bad
input, 3 diverged, 75 preempted (launch the same command again to resume).

Example:
  tpu/launch.sh --name my-tpu --zone us-central2-b -- \\
      --config digits_cnn --workdir runs/digits_cnn --config.mesh.data=-1

  --remote-dir DIR   the checkout tpu/install.sh made, under ~ (\$JAXDL_TPU_REMOTE_DIR; default jaxdl)

$COMMON_FLAGS_HELP

Then: tpu/logs.sh --name NAME --zone ZONE
USAGE
}

script_flag() {
	case "$1" in
	--remote-dir | --remote-dir=*)
		flag_value "$@"
		REMOTE_DIR="$VALUE"
		;;
	*) return 1 ;;
	esac
}

parse_args "$@"
require_target
((${#REST_ARGS[@]})) || die "give the jaxdl train arguments after --, e.g. -- --config digits_cnn --workdir runs/digits_cnn"
[[ ${REST_ARGS[0]} != train ]] || die "give the arguments of jaxdl train after --, without the word train"

train="$(quote_command .venv/bin/jaxdl train "${REST_ARGS[@]}")"
# The inner sh outlives the ssh session (nohup, no terminal), then logs jaxdl's exit code.
job="$train; echo \"=== jaxdl exited with code \$? at \$(date -u +%Y-%m-%dT%H:%M:%SZ)\""
tpu_ssh all "set -eu; mkdir -p $LOG_DIR_REMOTE; cd ~/$(shell_quote "$REMOTE_DIR"); echo \"=== \$(date -u +%Y-%m-%dT%H:%M:%SZ) on \$(hostname): \"$(shell_quote "$train") >> $LOG_FILE_REMOTE; nohup sh -c $(shell_quote "$job") >> $LOG_FILE_REMOTE 2>&1 < /dev/null &"
note "started; follow worker 0 with: tpu/logs.sh --name $TPU_NAME --zone $TPU_ZONE"
