#!/usr/bin/env bats
# serve.sh against hostile clients, local runtime: the Host check, the header deadline,
# the page's security headers on each of its routes, and the token beyond loopback.

bats_require_minimum_version 1.5.0

setup_file() {
  load test_helper
  DIR=$BATS_FILE_TMPDIR/tf
  train_small_classifier "$DIR"
  export DIR
}

setup() {
  load test_helper
  unset TG_SERVE_TOKEN
}

teardown() {
  # Whatever went wrong, the server does not outlive its test.
  [[ -z ${pid:-} ]] || kill -9 "$pid" 2>/dev/null || true
}

# start_server ARGS...: serve.sh DIR ARGS... in the background; pid and url (its address,
# host and port) once it says it serves. fd 3 closed: bats waits for it.
start_server() {
  bash "$REPO/serve.sh" "$DIR" --port 0 "$@" \
    >"$BATS_TEST_TMPDIR/stdout" 2>"$BATS_TEST_TMPDIR/stderr" 3>&- &
  pid=$!
  wait_until 120 grep -q '^Serving ' "$BATS_TEST_TMPDIR/stdout" || {
    cat "$BATS_TEST_TMPDIR/stderr"
    return 1
  }
  url=$(sed -n 's/^Serving .* at \(http:[^ ]*\) .*/\1/p' "$BATS_TEST_TMPDIR/stdout")
  port=${url##*:}
  port=${port%/}
}

# code ARGS...: the HTTP status curl gets for ARGS.
code() {
  curl --silent --output /dev/null --write-out '%{http_code}' "$@"
}

@test "serve.sh: a foreign Host gets 421, an unfinished head is closed, /page/index.html has the page's CSP" {
  start_server --header_timeout 1
  [ "$(code "${url}labels")" = 200 ]
  [ "$(code --header "Host: localhost:$port" "${url}labels")" = 200 ]
  # DNS rebinding: a page of evil.example, its name pointed at 127.0.0.1, sends its own name.
  run curl --silent --header "Host: evil.example:$port" --data-binary "@$(first_photo elsa)" "${url}predict"
  [[ $output == '{"error": "this server does not answer to the host '*"--allowed_hosts NAME\"}" ]]
  [ "${#lines[@]}" -eq 1 ]
  grep -q '"POST /predict" 421 ' "$BATS_TEST_TMPDIR/stderr"
  # The same policy on both routes of the page.
  root=$(curl --silent --dump-header - --output /dev/null "$url" | grep -i '^content-security-policy:')
  page=$(curl --silent --dump-header - --output /dev/null "${url}page/index.html" |
    grep -i '^content-security-policy:')
  [[ $root == *"default-src 'self'"* ]]
  [ "$root" = "$page" ]
  # A head never finished: the server ends the connection (cat then sees its end).
  exec 4<>"/dev/tcp/127.0.0.1/$port"
  printf 'GET /labels HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n' "$port" >&4
  run timeout 60 cat <&4
  exec 4<&-
  [ "$status" -eq 0 ]
  [ "$output" = "" ]
  [ "$(code "${url}healthz")" = 200 ]
}

@test "serve.sh --host 0.0.0.0 needs TG_SERVE_TOKEN or --no_token; with one, requests and the page need it" {
  run bash "$REPO/serve.sh" "$DIR" --port 0 --host 0.0.0.0
  [ "$status" -eq 2 ]
  [[ $output == "tensor-guess: listening on 0.0.0.0, beyond this machine, needs a token: set TG_SERVE_TOKEN "* ]]
  [ "${#lines[@]}" -eq 1 ]
  token=Zq8-w3rT_5yU7iO9pA1sD2fG
  TG_SERVE_TOKEN=$token start_server --host 0.0.0.0
  grep -q "^Requests need the token in TG_SERVE_TOKEN: 'Authorization: Bearer TOKEN'" "$BATS_TEST_TMPDIR/stdout"
  run ! grep -q "$token" "$BATS_TEST_TMPDIR/stdout" "$BATS_TEST_TMPDIR/stderr"
  url=http://127.0.0.1:$port/
  [ "$(code "${url}labels")" = 401 ]
  [ "$(code --header "Authorization: Bearer ${token}x" "${url}labels")" = 401 ]
  run curl --silent --fail --header "Authorization: Bearer $token" "${url}labels"
  [ "$output" = '{"labels": ["darth vader", "elsa"]}' ]
  # The page: opened once with ?token=, then its cookie does.
  [ "$(code --cookie-jar "$BATS_TEST_TMPDIR/jar" "${url}?token=$token")" = 303 ]
  [ "$(code --cookie "$BATS_TEST_TMPDIR/jar" "${url}page/page.js")" = 200 ]
  [ "$(code --cookie "$BATS_TEST_TMPDIR/jar" --data-binary "@$(first_photo elsa)" "${url}predict")" = 200 ]
}
