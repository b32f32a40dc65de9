# Sourced by the vendor-*.sh scripts: fetch one npm package, checked, into a directory.
#
#   npm_fetch NAME VERSION|latest DIR   unpacks the package into DIR and sets
#                                       FETCHED_VERSION and FETCHED_INTEGRITY
#
# The tarball is checked against the registry's sha512 integrity before it is unpacked.
REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org}

npm_fetch() {
  local name=$1 version=$2 dir=$3
  local meta="$dir.json" tarball integrity actual
  curl -fsSL "$REGISTRY/${name/\//%2f}" -o "$meta"
  if [[ "$version" == latest ]]; then
    version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dist-tags"]["latest"])' "$meta")
  fi
  read -r tarball integrity < <(python3 - "$meta" "$version" <<'PY'
import json, sys
meta, version = json.load(open(sys.argv[1])), sys.argv[2]
if version not in meta["versions"]:
    sys.exit(f"{meta['name']} has no version {version}")
dist = meta["versions"][version]["dist"]
print(dist["tarball"], dist["integrity"])
PY
  )
  curl -fsSL "$tarball" -o "$dir.tgz"
  actual="sha512-$(openssl dgst -sha512 -binary "$dir.tgz" | base64 -w0)"
  if [[ "$actual" != "$integrity" ]]; then
    echo "$name $version: integrity mismatch ($actual != $integrity)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  tar -xzf "$dir.tgz" -C "$dir" --strip-components=1
  FETCHED_VERSION=$version
  FETCHED_INTEGRITY=$integrity
}
