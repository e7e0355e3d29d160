# shellcheck shell=bash disable=SC2034 # the variables here are used by the scripts sourcing this
# Shared by the tpu/*.sh scripts (sourced, not run): settings, flag parsing, and running or
# printing commands. Each script defines usage() and script_flag() before calling parse_args.
#
# Settings come from flags, else from these environment variables:
#   --name              JAXDL_TPU_NAME              TPU VM (and queued resource) name
#   --zone              JAXDL_TPU_ZONE              e.g. us-central2-b
#   --project           JAXDL_TPU_PROJECT           default: gcloud's configured project
#   --accelerator-type  JAXDL_TPU_ACCELERATOR_TYPE  default v4-8
#   --version           JAXDL_TPU_VERSION           default: chosen from the accelerator type
#   --queued            JAXDL_TPU_QUEUED=1          use a queued resource (create, delete)
#   --spot              JAXDL_TPU_SPOT=1            Spot VM (create)
#   --remote-dir        JAXDL_TPU_REMOTE_DIR        checkout on each worker, under ~ (default jaxdl)

SCRIPT_NAME="tpu/$(basename "$0")"
TPU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$TPU_DIR")"

TPU_NAME="${JAXDL_TPU_NAME:-}"
TPU_ZONE="${JAXDL_TPU_ZONE:-}"
TPU_PROJECT="${JAXDL_TPU_PROJECT:-}"
TPU_ACCELERATOR_TYPE="${JAXDL_TPU_ACCELERATOR_TYPE:-v4-8}"
TPU_VERSION="${JAXDL_TPU_VERSION:-}"
TPU_QUEUED="${JAXDL_TPU_QUEUED:-0}"
TPU_SPOT="${JAXDL_TPU_SPOT:-0}"
REMOTE_DIR="${JAXDL_TPU_REMOTE_DIR:-jaxdl}"
# shellcheck disable=SC2088 # the tilde is expanded on the worker, not here
LOG_DIR_REMOTE='~/jaxdl_logs'
LOG_FILE_REMOTE="$LOG_DIR_REMOTE/train.log"
DRY_RUN=0
REST_ARGS=()
ALLOW_REST=0 # a script that takes `-- ARGS...` sets this to 1

# shellcheck disable=SC2016 # the $VARIABLES are meant literally
COMMON_FLAGS_HELP='Common flags (each --flag VALUE or --flag=VALUE):
  --name NAME        TPU VM name ($JAXDL_TPU_NAME)
  --zone ZONE        zone, e.g. us-central2-b ($JAXDL_TPU_ZONE)
  --project PROJECT  Google Cloud project ($JAXDL_TPU_PROJECT; default: gcloud config)
  --dry-run          print the commands, one per line, and run nothing
  -h, --help         show this help'

# One line on stderr, exit 2 (bad input).
die() {
	local message="$*"
	printf '%s: error: %s\n' "$SCRIPT_NAME" "${message//$'\n'/ }" >&2
	exit 2
}

# flag_value "$@": the value of `--flag VALUE` or `--flag=VALUE` in VALUE; args used in SHIFT_BY.
flag_value() {
	local flag="${1%%=*}"
	if [[ $1 == *=* ]]; then
		VALUE="${1#*=}"
		SHIFT_BY=1
	elif (($# >= 2)) && [[ $2 != --* ]]; then
		VALUE="$2"
		SHIFT_BY=2
	else
		die "$flag needs a value"
	fi
	[[ -n $VALUE ]] || die "$flag needs a non-empty value"
}

# A flag that takes no value must not be given one (--yes=no would otherwise mean yes).
no_value() {
	[[ $1 != *=* ]] || die "${1%%=*} takes no value"
	SHIFT_BY=1
}

parse_args() {
	while (($#)); do
		case "$1" in
		-h | --help)
			usage
			exit 0
			;;
		--dry-run | --dry-run=*)
			no_value "$1"
			DRY_RUN=1
			;;
		--name | --name=*)
			flag_value "$@"
			TPU_NAME="$VALUE"
			;;
		--zone | --zone=*)
			flag_value "$@"
			TPU_ZONE="$VALUE"
			;;
		--project | --project=*)
			flag_value "$@"
			TPU_PROJECT="$VALUE"
			;;
		--)
			((ALLOW_REST)) || die "unexpected -- (see --help)"
			shift
			REST_ARGS=("$@")
			return 0
			;;
		--*)
			script_flag "$@" || die "unknown flag ${1%%=*} (see --help)"
			;;
		*)
			die "unexpected argument '$1' (see --help)"
			;;
		esac
		shift "$SHIFT_BY"
	done
}

# The TPU name and zone every script needs, checked; the project only when given.
require_target() {
	[[ -n $TPU_NAME ]] || die "--name is required (or set JAXDL_TPU_NAME)"
	[[ -n $TPU_ZONE ]] || die "--zone is required (or set JAXDL_TPU_ZONE)"
	[[ $TPU_NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
		die "--name '$TPU_NAME': use lowercase letters, digits and hyphens, starting with a letter"
	[[ $TPU_ZONE =~ ^[a-z0-9-]+$ ]] || die "--zone '$TPU_ZONE' is not a zone name (e.g. us-central2-b)"
	[[ -z $TPU_PROJECT || $TPU_PROJECT =~ ^[a-z0-9.:-]+$ ]] ||
		die "--project '$TPU_PROJECT' is not a project id"
	[[ $REMOTE_DIR =~ ^[A-Za-z0-9._][A-Za-z0-9._/-]*$ && $REMOTE_DIR != *..* ]] ||
		die "--remote-dir '$REMOTE_DIR': give a plain path relative to the home directory"
	LOCATION_FLAGS=("--zone=$TPU_ZONE")
	if [[ -n $TPU_PROJECT ]]; then
		LOCATION_FLAGS+=("--project=$TPU_PROJECT")
	fi
}

# One word, quoted for a POSIX shell only when it needs to be.
shell_quote() {
	local word="$1" quote="'" escaped="'\\''"
	if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
		printf '%s' "$word"
	else
		printf "'%s'" "${word//$quote/$escaped}"
	fi
}

# A command line, each word quoted as needed: what --dry-run prints, and can be pasted into a shell.
quote_command() {
	local line="" word
	for word in "$@"; do
		line+="${line:+ }$(shell_quote "$word")"
	done
	printf '%s\n' "$line"
}

# Prints the command (stdout with --dry-run; stderr with a `+ ` otherwise) and runs it unless --dry-run.
run() {
	if ((DRY_RUN)); then
		quote_command "$@"
	else
		printf '+ %s' "$(quote_command "$@")" >&2
		printf '\n' >&2
		"$@"
	fi
}

# gcloud compute tpus tpu-vm ssh on WORKER ("all" or an index) running COMMAND.
tpu_ssh() {
	local worker="$1" command="$2"
	run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION_FLAGS[@]}" "--worker=$worker" \
		--command "$command"
}

# A note for the user on stderr (never with --dry-run, whose stdout must be commands only).
note() {
	if ((!DRY_RUN)); then
		printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
	fi
}

check_worker() {
	[[ $1 =~ ^(0|[1-9][0-9]*)$ ]] || die "--worker '$1': give a worker index (0, 1, ...)"
}
