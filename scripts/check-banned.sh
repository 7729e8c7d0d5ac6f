#!/usr/bin/env bash
# Fail when any C source uses a function blueq bans (STYLE.md, after curl's list).
# strtol is allowed only where the same function also checks its end pointer and errno;
# we keep it simple: strtol/strtoul/strtoll may appear only in lib/core/opt.c, whose
# bq_opt_parse_int is the one checked wrapper everything else calls.
set -u
root=${1:-$(dirname "$0")/..}
cd "$root" || exit 2
status=0
files=$(find lib node sim cli manager backend tests bench -name '*.c' -o -name '*.h' 2>/dev/null | sort)
[ -n "$files" ] || { echo "check-banned: no sources found"; exit 1; }
pattern='\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll|strtok|sscanf)[[:space:]]*\('
if grep -nE "$pattern" $files; then
	echo "check-banned: banned function used (see STYLE.md)"
	status=1
fi
strtol_users=$(grep -lE '\bstrto(l|ul|ll|ull)[[:space:]]*\(' $files | grep -v '^lib/core/opt.c$')
if [ -n "$strtol_users" ]; then
	echo "check-banned: strtol family outside lib/core/opt.c (use bq_opt_parse_int):"
	echo "$strtol_users"
	status=1
fi
n=$(echo "$files" | wc -l)
[ $status -eq 0 ] && echo "check-banned: $n files clean"
exit $status
