#!/usr/bin/env bash
# Runs harden as the GitHub Action (action.yml) does, and as any CI can: validate, plan or review,
# writing a PR comment (Markdown) and a SARIF file. Inputs come from the environment:
#   HARDEN_COMMAND   validate | plan | review                  (default: review)
#   HARDEN_STACK     a stack file                               (plan, review)
#   HARDEN_PROFILES  profile names or files, space-separated    (plan, review; validate: paths)
#   HARDEN_SNAPSHOT  plan offline against these manifests       (default: the cluster of the kubeconfig)
#   HARDEN_BASE      the revision to review against             (review; e.g. the PR's base SHA)
#   HARDEN_HEAD      the revision under review                  (review; default HEAD)
#   HARDEN_ARGS      more arguments for harden plan/review, e.g. "--set namespace=argo"
#   HARDEN_OUT       where to write comment.md and harden.sarif (default: ./harden-out)
#   HARDEN_MAX_COMMENT_SIZE  split the comment into parts of at most this many characters
# Exit status: 0 when the plan/review may merge, 1 when harden failed or the change breaks a
# component need, check or expectation (the comment and SARIF are written first either way).
set -uo pipefail

cmd="${HARDEN_COMMAND:-review}"
out="${HARDEN_OUT:-harden-out}"
harden="${HARDEN_BIN:-harden}"
mkdir -p "$out"

selection=()
[ -n "${HARDEN_STACK:-}" ] && selection+=(-f "$HARDEN_STACK")
for p in ${HARDEN_PROFILES:-}; do selection+=(--profile "$p"); done
[ -n "${HARDEN_SNAPSHOT:-}" ] && selection+=(--snapshot "$HARDEN_SNAPSHOT")
# shellcheck disable=SC2206  # HARDEN_ARGS is a list of words by design
extra=(${HARDEN_ARGS:-})
size=(--max-comment-size "${HARDEN_MAX_COMMENT_SIZE:-65536}")

emit() { [ -n "${GITHUB_OUTPUT:-}" ] && echo "$1=$2" >> "$GITHUB_OUTPUT"; return 0; }

case "$cmd" in
  validate)
    # shellcheck disable=SC2086  # paths are words
    "$harden" validate ${HARDEN_PROFILES:-} ${HARDEN_STACK:-}
    rc=$?
    emit exitcode "$rc"
    exit "$rc"
    ;;
  plan)
    "$harden" plan "${selection[@]}" "${extra[@]}" "${size[@]}" -o markdown > "$out/comment.md"
    rc=$?
    "$harden" plan "${selection[@]}" "${extra[@]}" -o sarif > "$out/harden.sarif" 2>/dev/null
    ;;
  review)
    if [ -z "${HARDEN_BASE:-}" ]; then
      echo "harden-action: HARDEN_BASE (the revision to review against) is not set" >&2
      exit 1
    fi
    rev=(--base "$HARDEN_BASE" --head "${HARDEN_HEAD:-HEAD}")
    "$harden" review "${rev[@]}" "${selection[@]}" "${extra[@]}" -o json > "$out/review.json"
    rc=$?
    "$harden" review "${rev[@]}" "${selection[@]}" "${extra[@]}" "${size[@]}" -o markdown > "$out/comment.md" 2>/dev/null
    "$harden" review "${rev[@]}" "${selection[@]}" "${extra[@]}" -o sarif > "$out/harden.sarif" 2>/dev/null
    if [ "$rc" -eq 2 ]; then
      # A changed posture is what a review is for; a change that breaks a need or a check is not.
      worse=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["statusesWorse"])' "$out/review.json")
      rc=0
      if [ "$worse" != "0" ]; then
        echo "harden-action: the change breaks $worse component need(s) or check(s); see the comment" >&2
        rc=1
      fi
    fi
    ;;
  *)
    echo "harden-action: unknown command '$cmd' (validate, plan or review)" >&2
    exit 1
    ;;
esac

emit exitcode "$rc"
emit comment "$out/comment.md"
emit sarif "$out/harden.sarif"
# 2 from plan means "changes present": not a failure of the pull request.
[ "$rc" -eq 2 ] && rc=0
exit "$rc"
