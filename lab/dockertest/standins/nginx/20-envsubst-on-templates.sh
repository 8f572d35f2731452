#!/bin/sh
# As the official image's step of the same name: render every
# $NGINX_ENVSUBST_TEMPLATE_DIR/*.template (default /etc/nginx/templates) to
# $NGINX_ENVSUBST_OUTPUT_DIR (default /etc/nginx/conf.d) without the suffix,
# substituting only the variables whose names match NGINX_ENVSUBST_FILTER.
set -e
template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
filter="${NGINX_ENVSUBST_FILTER:-}"
defined_envs=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" </dev/null))
[ -d "$template_dir" ] || exit 0
find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
	relative_path="${template#"$template_dir/"}"
	output_path="$output_dir/${relative_path%"$suffix"}"
	mkdir -p "$(dirname "$output_path")"
	echo "$0: Running envsubst on $template to $output_path"
	envsubst "$defined_envs" <"$template" >"$output_path"
done
