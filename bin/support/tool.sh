# Sourced by bin/compile and the CNB build: finds a Python >= 3.11 on the stack and keeps
# wheelbarrow installed in a venv in the build cache, reinstalled when the buildpack changes.
# Sets WB_PYTHON. Output follows Heroku's style. With a remote store on S3 (the config var
# WHEELBARROW_REMOTE, or remote = "s3://..." in the app's settings) the S3 client comes too.

wheelbarrow_tool() {
    local cache=$1 env_dir=${2:-} app_dir=${3:-}
    local tool="$cache/wheelbarrow-tool" python="" candidate stamp cached="" index="" extras=""
    # The buildpack's own content decides when the cached tool is stale.
    stamp=$(cd "$BP_DIR" && find pyproject.toml src -type f -name '*.py' -o -name pyproject.toml |
        LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
    if [ -n "$env_dir" ] && [ -f "$env_dir/WHEELBARROW_TOOL_INDEX_URL" ]; then
        index=$(cat "$env_dir/WHEELBARROW_TOOL_INDEX_URL")
    fi
    if { [ -n "$env_dir" ] && grep -qs '^s3://' "$env_dir/WHEELBARROW_REMOTE"; } ||
        { [ -n "$app_dir" ] && grep -qsE '^remote *= *"s3://' \
            "$app_dir/pyproject.toml" "$app_dir/wheelbarrow.toml"; }; then
        extras="[s3]"
        stamp="$stamp-s3"
    fi
    if [ -f "$tool/.stamp" ]; then
        read -r cached < "$tool/.stamp" || true
    fi
    # A current tool whose Python still runs is used as it is: the stack's Pythons are looked
    # for (each one started) only to install it.
    if [ -x "$tool/bin/python" ] && [ "$cached" = "$stamp" ]; then
        WB_PYTHON="$tool/bin/python"
        return
    fi
    for candidate in python3.14 python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" > /dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2> /dev/null; then
            python=$(command -v "$candidate")
            break
        fi
    done
    if [ -z "$python" ]; then
        echo " !     wheelbarrow needs Python 3.11 or newer on the stack to run (found none)." >&2
        echo " !     Use a stack that has python3 >= 3.11, such as heroku-24." >&2
        exit 1
    fi
    echo "-----> Installing wheelbarrow into the build cache (with $("$python" --version))"
    rm -rf "$tool"
    "$python" -m venv "$tool"
    if ! "$tool/bin/python" -m pip install --quiet --disable-pip-version-check \
        ${index:+--index-url "$index"} "$BP_DIR$extras" > "$cache/wheelbarrow-tool.log" 2>&1; then
        sed 's/^/       /' "$cache/wheelbarrow-tool.log" | tail -20
        echo " !     Installing wheelbarrow failed (log above)." >&2
        echo " !     Set WHEELBARROW_TOOL_INDEX_URL to an index that holds its dependencies." >&2
        rm -rf "$tool"
        exit 1
    fi
    echo "$stamp" > "$tool/.stamp"
    WB_PYTHON="$tool/bin/python"
}
