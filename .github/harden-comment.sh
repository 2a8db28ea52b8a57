#!/usr/bin/env bash
# Creates or updates harden's comment on a pull request, with `gh api` (the GitHub CLI).
#   harden-comment.sh COMMENT.md
# Needs GITHUB_REPOSITORY (owner/name), PR_NUMBER and a token for gh (GH_TOKEN). A comment that
# harden split into numbered parts (`<!-- harden:part I/N -->`, see --max-comment-size) becomes N
# comments; each is found again on the next run by its hidden marker and edited in place, and parts
# a longer earlier run left are deleted, so a pull request always holds one current account.
set -euo pipefail

file="$1"
repo="${GITHUB_REPOSITORY:?GITHUB_REPOSITORY is not set}"
pr="${PR_NUMBER:?PR_NUMBER is not set}"
tag="${HARDEN_COMMENT_TAG:-harden}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One file per part, each with the hidden marker that finds it again.
python3 - "$file" "$work" "$tag" <<'PY'
import json, re, sys
text, work, tag = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
parts = [p for p in re.split(r"(?m)^(?=<!-- harden:part \d+/\d+ -->)", text) if p.strip()] or [text]
for i, part in enumerate(parts, 1):
    with open(f"{work}/part{i}.json", "w") as f:
        json.dump({"body": f"<!-- {tag}-comment:{i} -->\n{part}"}, f)
print(len(parts), file=open(f"{work}/count", "w"))
PY
count="$(cat "$work/count")"

gh api --paginate "repos/$repo/issues/$pr/comments" > "$work/existing.json"
existing() {  # the id of the comment holding part $1, or nothing
  python3 - "$work/existing.json" "<!-- $tag-comment:$1 -->" <<'PY'
import json, sys
raw = open(sys.argv[1]).read()
# --paginate prints one JSON array per page, back to back
i, decoder, comments = 0, json.JSONDecoder(), []
while i < len(raw):
    if raw[i].isspace():
        i += 1
        continue
    page, i = decoder.raw_decode(raw, i)
    comments += page
print(next((c["id"] for c in comments if c.get("body", "").startswith(sys.argv[2])), ""))
PY
}

for i in $(seq 1 "$count"); do
  id="$(existing "$i")"
  if [ -n "$id" ]; then
    gh api -X PATCH "repos/$repo/issues/comments/$id" --input "$work/part$i.json" > /dev/null
    echo "updated comment $id (part $i of $count)"
  else
    gh api -X POST "repos/$repo/issues/$pr/comments" --input "$work/part$i.json" > /dev/null
    echo "created a comment (part $i of $count)"
  fi
done
# Parts an earlier, longer account left behind.
i=$((count + 1))
while id="$(existing "$i")" && [ -n "$id" ]; do
  gh api -X DELETE "repos/$repo/issues/comments/$id" > /dev/null
  echo "deleted comment $id (part $i of an earlier run)"
  i=$((i + 1))
done
