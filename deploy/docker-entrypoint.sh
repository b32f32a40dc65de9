#!/bin/sh
# The image's two services, and any other command (`docker compose run web manage.py ...`).
set -eu
cd /app

# Docker hides parts of /proc and /sys in every container behind read-only or empty mounts,
# and mounts /sys read-only. The kernel lets a user namespace mount a new proc or sysfs (each
# sandbox needs its own, and `ip netns exec` in a lesson a writable one) only where one is
# fully visible and no more restricted, so sandboxd's container undoes both, as `docker run
# --security-opt systempaths=unconfined` would (compose cannot ask for it). Learners never see
# these: every sandbox mounts its own /proc and /sys, masked again.
unmask_proc_and_sys() {
  awk '$5 ~ "^/proc/|^/sys/" && $5 !~ "^/sys/fs/cgroup" {print $5}' /proc/self/mountinfo |
    sort -r | while read -r path; do umount "$path"; done
  mount -o remount,rw /sys
}

case "${1:-web}" in
  web)
    # Each step is idempotent, so every start (and an upgrade) runs them all.
    python manage.py migrate --noinput
    python manage.py lessons load
    python manage.py ensure_instructor
    # A class reconnecting at once after a sandboxd restart may wait its turn for a sandbox
    # longer than Daphne's default 5 s before the websocket is accepted.
    # On uvloop: see sandboxapp/daphne_on_uvloop.py.
    exec python -m sandboxapp.daphne_on_uvloop --bind 0.0.0.0 --port "${PORT:-8000}" \
      --websocket_connect_timeout 30 sandboxapp.asgi:application
    ;;
  maintenance)
    # Once a day: guests nobody has seen for CONTAINED_GUEST_RETENTION_DAYS go, with their
    # files (docs/operations.md), and so do expired sessions. A failed pass is in the log,
    # and the next day's tries again.
    while true; do
      python manage.py prune_guests || echo "prune_guests failed: see above" >&2
      python manage.py clearsessions || echo "clearsessions failed: see above" >&2
      sleep 86400
    done
    ;;
  sandboxd)
    unmask_proc_and_sys
    exec python manage.py sandboxd
    ;;
  manage.py)
    shift
    exec python manage.py "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
