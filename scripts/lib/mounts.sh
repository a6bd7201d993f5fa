# shellcheck shell=bash
# What a command reads and writes, declared by the wrappers before they run it
# (sourced by scripts/lib.sh). The Docker runtime mounts exactly these paths
# (scripts/lib/docker.sh); the local runtime ignores them.

# Which flags take a value and which name paths, from the CLI's parser.
# shellcheck source=scripts/lib/cli-flags.sh
source "$TG_ROOT/scripts/lib/cli-flags.sh"

TG_MOUNTS=()     # "ro:PATH" (read-only) or "rw:PATH" (writable folder)
declare -gA TG_MOUNT_SOURCE=() # PATH: the host path to mount there, when not PATH itself
declare -gA TG_MOUNT_WHAT=()   # PATH: what a writable folder is, for messages ("report folder")
TG_MODULE=""     # train's feature extractor, when it is a URL or TF Hub handle

# mount_input PATH: the command reads PATH (a file or folder), and may not write it.
# A path that does not exist is left out: the CLI reports it as it would locally.
# Symlinks inside a folder (photos linked from elsewhere) would dangle in the
# container, so where they lead is mounted read-only too (see mount_links).
mount_input() {
  [[ -e $1 ]] || return 0
  local path
  path=$(abs_path "$1")
  TG_MOUNTS+=("ro:$path")
  [[ -d $path ]] || return 0
  mount_links "$path" < <(find -H "$path" -type l -printf '%Y\0%p\0%l\0' 2>/dev/null)
}

# mount_links INSIDE: read, NUL-separated, each symlink's kind once followed (find's
# %Y), path and text, and mount read-only what the container needs to follow it: a
# linked folder, or a linked file's folder; never a place inside INSIDE (mounted
# already) nor one hiding the image's own. The mount goes where the link's text
# points (the container follows its first hop there), from where the host's kernel
# finds it (`realpath`). A link to a link whose folder is outside is mounted as the
# file itself; dangling links and loops are left for the CLI to report unreadable.
# shellcheck disable=SC2034  # TG_MOUNT_SOURCE read by scripts/lib/docker.sh
mount_links() {
  local inside=$1 kind link text first folder i n
  local kinds=() links=() firsts=() asked=() real=()
  while IFS= read -r -d '' kind && IFS= read -r -d '' link && IFS= read -r -d '' text; do
    [[ $kind == [df] && -n $text ]] || continue
    # The first hop, as the container sees it.
    if [[ $text == /* ]]; then first=$text; else first=${link%/*}/$text; fi
    clean_path_reply "$first"
    first=$REPLY
    [[ -n $inside && ($first == "$inside" || $first == "$inside"/*) ]] && continue
    kinds+=("$kind") links+=("$link") firsts+=("$first")
    # Asked of realpath, two per link: the link to the end, and its first hop's folder.
    if [[ $text == */* ]]; then folder=${text%/*}; else folder=.; fi
    [[ $text == /* ]] || folder=${link%/*}/$folder
    asked+=("$link" "${folder:-/}")
  done
  n=${#links[@]}
  ((n)) || return 0
  # One realpath for them all (-m: an answer for each, in order).
  mapfile -d '' -t real < <(realpath -z -m -- "${asked[@]}")
  for ((i = 0; i < n; i++)); do
    local target=${real[2 * i]} first_dir=${real[2 * i + 1]} where source
    [[ -e $target ]] || continue
    first=${firsts[i]}
    if [[ ${kinds[i]} == d ]]; then
      where=$first source=$target
    elif [[ -L $first_dir/${first##*/} ]]; then
      where=$first source=$target # a chain of links: the file itself
    else
      where=${first%/*} source=$first_dir
      where=${where:-/}
    fi
    [[ -n $inside && ($where == "$inside" || $where == "$inside"/*) ]] && continue
    reserved_in_image "$where" && continue
    TG_MOUNTS+=("ro:$where")
    [[ $source == "$where" ]] || TG_MOUNT_SOURCE[$where]=$source
  done
}

# mount_output FOLDER [WHAT]: the command writes into FOLDER (WHAT, for messages:
# "report folder"). Docker's runtime creates it first, as the caller: it is theirs.
# shellcheck disable=SC2034  # TG_MOUNT_WHAT read by scripts/lib/docker.sh
mount_output() {
  local path
  path=$(abs_path "$1")
  TG_MOUNTS+=("rw:$path")
  [[ -z ${2:-} ]] || TG_MOUNT_WHAT[$path]=$2
}

# evaluate_places DIR LABELLED [OUT]: sets TG_LABELLED (a folder, or a labels CSV or
# annotation file), TG_PHOTOS (the folder its photos are under) and TG_OUT (OUT, else
# DIR/report-<the set's name>), absolute, links followed; refuses a report folder
# inside the photos' folder. The CLI decides alike (commands/evaluate.py, places),
# too late for Docker's mounts: tests/python/test_evaluate_places.py checks both.
evaluate_places() {
  local dir=$1 name
  TG_LABELLED=$(realpath -m -- "$(abs_path "$2")")
  if [[ -f $TG_LABELLED ]]; then
    TG_PHOTOS=$(dirname "$TG_LABELLED") # a labels CSV: its paths are relative to its folder
    name=$(basename "$TG_LABELLED")
    [[ ${name#.} != *.* || ${name##*.} == "" ]] || name=${name%.*} # its stem, as Python's
  else
    require_dir "$TG_LABELLED" "LABELLED_DIR"
    TG_PHOTOS=$TG_LABELLED name=$(basename "$TG_LABELLED")
  fi
  TG_OUT=$(realpath -m -- "$(abs_path "${3:-$dir/report-$name}")")
  if [[ $TG_OUT == "$TG_PHOTOS" || $TG_OUT == "$TG_PHOTOS"/* ]]; then
    die "the report folder $TG_OUT is inside $TG_PHOTOS; choose one outside it" 2
  fi
}

# read_flag COMMANDS ARG [NEXT]: succeeds when ARG is a flag that one of COMMANDS
# (space-separated) takes a value for, spelled in full as `--flag=VALUE` or followed
# by NEXT, as the CLI's parser reads it (TG_CLI_FLAGS, generated from it): then
# TG_FLAG_KIND is the flag's kind there, TG_FLAG_VALUE its value, and TG_FLAG_TOOK 1
# when that value is NEXT (else 0). A flag missing its value fails: the CLI reports
# it, or an optional one takes its default.
read_flag() {
  local commands command flag=${2%%=*}
  TG_FLAG_KIND="" TG_FLAG_TOOK=0
  [[ $2 == --?* ]] || return 1
  read -r -a commands <<<"$1"
  for command in "${commands[@]}"; do
    TG_FLAG_KIND=${TG_CLI_FLAGS["$command $flag"]:-}
    [[ -z $TG_FLAG_KIND ]] || break
  done
  [[ -n $TG_FLAG_KIND ]] || return 1
  if [[ $2 == *=* ]]; then
    TG_FLAG_VALUE=${2#*=}
  elif (($# > 2)) && [[ $TG_FLAG_KIND != optional || $3 != -* ]]; then
    TG_FLAG_VALUE=$3 TG_FLAG_TOOK=1
  else
    return 1
  fi
}

# mount_flag_path DIR: declare the path the flag read_flag read names, if a path's
# (relative: inside DIR, as the CLI takes it; a write-here folder from the cwd).
mount_flag_path() {
  case $TG_FLAG_KIND in
    read | read-folder-of | write | write-report | write-folder-of) ;;
    write-here)
      mount_output "$(abs_path "$TG_FLAG_VALUE")" "drawings folder"
      return 0
      ;;
    *) return 0 ;;
  esac
  local path
  path=$(in_dir "$1" "$TG_FLAG_VALUE")
  case $TG_FLAG_KIND in
    read) mount_input "$path" ;;
    # The CSV's folder: the photos it names are relative to it.
    read-folder-of) mount_input "$(dirname "$path")" ;;
    # Folders the CLI writes files into.
    write) mount_output "$path" ;;
    write-report) mount_output "$path" "report folder" ;;
    # Files, and the SavedModel folder that the CLI swaps in whole (a rename
    # cannot replace a mount point): the folder that holds them is mounted.
    write-folder-of) mount_output "$(dirname "$path")" ;;
  esac
}

# mount_train DIR ARGS...: declare what `train DIR ARGS...` reads and writes: DIR
# (writable) but not its photos DIR/data (read-only), path flags pointing
# elsewhere and a local module folder; notes a module URL or handle in TG_MODULE.
# shellcheck disable=SC2034  # TG_MODULE read by scripts/lib/docker.sh
mount_train() {
  local dir=$1 arg module=${TFHUB_MODULE:-}
  shift
  mount_output "$dir"
  mount_input "$dir/data"
  while (($#)); do
    arg=$1
    shift
    read_flag train "$arg" "${@:1:1}" || continue
    shift "$TG_FLAG_TOOK"
    if [[ $TG_FLAG_KIND == module ]]; then
      module=$TG_FLAG_VALUE
    else
      mount_flag_path "$dir"
    fi
  done
  [[ -n $module ]] || module=$TG_DEFAULT_MODULE
  if [[ $module =~ ^[a-z][a-z0-9+.-]*:// ]]; then
    TG_MODULE=$module
  elif [[ $module == /* ]]; then
    mount_input "$module"
  elif [[ -e $module ]]; then
    mount_input "$module"  # the CLI finds a relative folder from the working directory
  else
    TG_MODULE=$module  # a TF Hub handle such as google/imagenet/...
  fi
}

# mount_guess DIR ARGS...: declare what `guess DIR ARGS...` reads (read-only): DIR,
# the images among ARGS, and graph files that flags name elsewhere (the flags of
# guess, sort and evaluate, which all three wrappers pass through it); and what it
# writes: guess --draw's folder. An image is given by its folder, mounted once
# however many images it holds (worked out without a subshell per image: `guess.sh
# DIR photos/*.jpg` may name thousands); symlinked images add where they lead.
mount_guess() {
  local dir=$1 arg images_only=0 links=() folder
  local -A seen=()
  shift
  mount_input "$dir"
  while (($#)); do
    arg=$1
    shift
    if ((!images_only)); then
      case $arg in
        --) images_only=1; continue ;;
        -*)
          if read_flag "guess sort evaluate" "$arg" "${@:1:1}"; then
            shift "$TG_FLAG_TOOK"
            mount_flag_path "$dir"
          fi
          continue
          ;;
      esac
    fi
    [[ -e $arg ]] || continue # the CLI reports it
    # A folder, or a path whose `..` the kernel must resolve: as mount_input does.
    if [[ -d $arg || /$arg/ == */../* ]]; then
      mount_input "$arg"
      continue
    fi
    [[ $arg == /* ]] || arg=$PWD/$arg
    clean_path_reply "$arg"
    [[ -L $REPLY ]] && links+=("$REPLY")
    folder=${REPLY%/*}
    if [[ -z $folder ]]; then
      mount_input "$REPLY" # an image in / : not all of /
    elif [[ -z ${seen[$folder]:-} ]]; then
      seen[$folder]=1
      TG_MOUNTS+=("ro:$folder")
    fi
  done
  ((${#links[@]} == 0)) || mount_links "" < <(find "${links[@]}" -maxdepth 0 -printf '%Y\0%p\0%l\0' 2>/dev/null)
}

# mount_export DIR: declare what `export DIR` reads and writes: DIR (writable) and
# the photo folders the training read (read-only: int8 calibrates on its training
# photos, the accuracy table scores its test ones), listed in DIR/.train_inputs, each
# path ended by a NUL byte. Without that file, or for a relative path, no photos are
# mounted: export reports them missing, as any path it cannot read.
mount_export() {
  local dir=$1 path paths=()
  mount_output "$dir"
  [[ -f $dir/.train_inputs ]] || return 0
  mapfile -d '' -t paths <"$dir/.train_inputs"
  for path in "${paths[@]}"; do
    if [[ $path != /* ]]; then
      say "ignoring '$path' in $dir/.train_inputs: not an absolute path"
      continue
    fi
    mount_input "$path"
  done
}

# mount_serve DIR ARGS...: declare what `serve DIR ARGS...` reads (read-only): DIR
# and graph files that flags name elsewhere; and the address it listens on
# (--host, default 127.0.0.1; --port, default 8080), which the Docker runtime
# publishes on that same host address (see publish_port).
mount_serve() {
  local dir=$1 arg host=127.0.0.1 port=8080
  shift
  mount_input "$dir"
  while (($#)); do
    arg=$1
    shift
    read_flag serve "$arg" "${@:1:1}" || continue
    shift "$TG_FLAG_TOOK"
    case $arg in
      --host | --host=*) host=$TG_FLAG_VALUE ;;
      --port | --port=*) port=$TG_FLAG_VALUE ;;
      *) mount_flag_path "$dir" ;;
    esac
  done
  publish_port "$host" "$port"
}

# publish_port HOST PORT: the command serves on HOST:PORT. The Docker runtime then
# gives the container a network (the default bridge, instead of none), publishes the
# port on HOST only (`-p HOST:PORT:PORT`), and has the server listen on 0.0.0.0
# inside, saying HOST as its address; the local runtime needs nothing.
TG_PUBLISH=()
# shellcheck disable=SC2034  # TG_PUBLISH read by scripts/lib/docker.sh
publish_port() {
  TG_PUBLISH=("$1" "$2")
}

# reserved_in_image PATH: succeeds when mounting PATH would hide part of the image
# (the system, the venv, HOME); that part into REPLY (no subshell: it runs per path).
reserved_in_image() {
  local place
  for place in /bin /boot /dev /etc /home/tensorguess /lib /lib32 /lib64 /libx32 /opt/tensorguess \
    /proc /sbin /sys /usr; do
    if [[ $1 == "$place" || $1 == "$place"/* || $1 == / || $place == "$1"/* ]]; then
      REPLY=$place
      return 0
    fi
  done
  return 1
}
