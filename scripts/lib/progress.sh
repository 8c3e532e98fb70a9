# Sourced by scripts/*.sh: `step NAME CMD...` runs CMD with its output in var/setup-logs/NAME.log and prints a
# heartbeat on stderr at least every 8 s (elapsed time and the latest output line), so no step is silent.
# The caller defines say().
step() {
  local name="$1" logf="var/setup-logs/$1.log" t0=$SECONDS last=$SECONDS pid; shift
  mkdir -p var/setup-logs
  "$@" >"$logf" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS - last >= 8 )) && kill -0 "$pid" 2>/dev/null; then
      last=$SECONDS
      say "  ... $name: $((SECONDS - t0))s: $(grep -v -e '^\s*$' -e 'is ignored: it is neither' "$logf" | tail -n 1 | tr -d '\r' | cut -c1-100)"
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$logf" >&2
    say "$name failed (full log: $logf)"
    return 1
  fi
  say "  $name done in $((SECONDS - t0))s"
}
