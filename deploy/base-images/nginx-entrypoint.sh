#!/bin/sh
# What the official nginx image's entrypoint does with templates: each /etc/nginx/templates/NAME.template becomes
# /etc/nginx/conf.d/NAME, with only the environment variables that are set substituted (nginx's own $variables
# stay as they are).
set -eu

templates=/etc/nginx/templates
output=/etc/nginx/conf.d
defined="$(printf '${%s} ' $(env | cut -d= -f1))"

for template in "$templates"/*.template; do
    [ -e "$template" ] || continue
    name="$(basename "$template" .template)"
    echo "$0: rendering $template to $output/$name" >&2
    envsubst "$defined" <"$template" >"$output/$name"
done

exec "$@"
