# Sourced by tests/package/run: debootstrap fetches from the Debian archive this machine's apt already uses,
# through apt's proxy if it has one, so the package test works behind any mirror or proxy and the repository
# names no host. $HEARTH_DEBIAN_MIRROR overrides. Needs `fail` from the caller.
apt_source_locations() { # apt's source list file and its parts directory (Dir::Etc::sourcelist, ::sourceparts)
  local list=/etc/apt/sources.list parts=/etc/apt/sources.list.d
  if command -v apt-config >/dev/null 2>&1; then
    eval "$(apt-config shell list Dir::Etc::sourcelist/f parts Dir::Etc::sourceparts/d)"
  fi
  printf '%s\n%s\n' "$list" "${parts%/}"
}
apt_source_files() { # apt's source lists in the order apt reads them: sources.list, then sources.list.d/ by name
  local list parts f
  { read -r list && read -r parts; } < <(apt_source_locations)
  [ -f "$list" ] && printf '%s\n' "$list"
  for f in "$parts"/*; do
    case $f in *.list | *.sources) [ -f "$f" ] && printf '%s\n' "$f" ;; esac
  done
  return 0
}
apt_deb_sources() { # FILE... — "URI SUITE" for each binary ("deb") source, one-line (*.list) or deb822 (*.sources)
  awk '
    function flush(   i, j, nu, ns, u, s) {
      if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
        nu = split(uris, u); ns = split(suites, s)
        for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
      }
      types = uris = suites = enabled = field = ""
    }
    FNR == 1 { flush(); deb822 = FILENAME ~ /\.sources$/ }
    !deb822 {
      sub(/#.*/, "")
      if ($1 != "deb") next
      sub(/^[ \t]*deb[ \t]+/, "")
      if (substr($0, 1, 1) == "[") sub(/^\[[^]]*\][ \t]*/, "")
      if (NF >= 2) print $1, $2
      next
    }
    /^#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^[ \t]/ { if (field == "uris") uris = uris " " $0; else if (field == "suites") suites = suites " " $0; next }
    {
      field = tolower(substr($0, 1, index($0, ":") - 1)); value = substr($0, index($0, ":") + 1)
      if (field == "types") types = value; else if (field == "uris") uris = value
      else if (field == "suites") suites = value; else if (field == "enabled") { enabled = value; gsub(/[ \t]/, "", enabled) }
    }
    END { flush() }
  ' "$@"
}
debian_mirror() { # SUITE [FILE...] — the first deb source that is a Debian archive for SUITE (default: apt's files)
  # A Debian archive: its suite is SUITE, this host's codename on Debian, or stable/testing/unstable (with
  # -updates/-backports allowed), so a third-party repository listed first is passed over; security archives
  # (suite *-security or "security" in the URI's path) hold no base system and are skipped too. mirror+file:
  # URIs (apt's mirror lists) give their first entry; other mirror lists and cdrom: are passed over.
  local want=$1 host_codename="" uri suite base f files
  shift
  if [ $# -gt 0 ]; then files=("$@"); else mapfile -t files < <(apt_source_files); fi
  [ ${#files[@]} -gt 0 ] || return 1
  if grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then
    host_codename="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release | tr -d '"')"
  fi
  while read -r uri suite; do
    case $suite in *-security | */updates) continue ;; esac
    case ${uri#*://*/} in *security*) continue ;; esac # the URI's path
    base="${suite%-backports-sloppy}" base="${base%-backports}" base="${base%-proposed-updates}" base="${base%-updates}"
    case $base in
      "$want" | stable | oldstable | oldoldstable | testing | unstable | sid) ;;
      *) if [ -z "$host_codename" ] || [ "$base" != "$host_codename" ]; then continue; fi ;;
    esac
    case $uri in
      mirror+file:*)
        f="${uri#mirror+file:}" f="/${f#"${f%%[!/]*}"}"
        uri="$(awk '{ sub(/#.*/, "") } $1 != "" { print $1; exit }' "$f" 2>/dev/null)"
        [ -n "$uri" ] || continue
        ;;
      mirror:* | mirror+* | cdrom:*) continue ;;
    esac
    printf '%s\n' "$uri"
    return 0
  done < <(apt_deb_sources "${files[@]}")
  return 1
}
apt_proxy() { # SCHEME HOST — the proxy apt would use for SCHEME://HOST/ (Acquire::SCHEME::Proxy[::HOST] or
  # its Proxy-Auto-Detect command; https falls back to http's settings, as apt does), or nothing (none, DIRECT)
  local scheme=$1 host=$2 s p="" detect=""
  command -v apt-config >/dev/null 2>&1 || return 0
  for s in "$scheme" http; do
    eval "$(apt-config shell p "Acquire::$s::Proxy::$host")"
    [ -n "$p" ] || eval "$(apt-config shell p "Acquire::$s::Proxy")"
    if [ -z "$p" ]; then
      eval "$(apt-config shell detect "Acquire::$s::Proxy-Auto-Detect")"
      [ -n "$detect" ] && [ -x "$detect" ] && p="$("$detect" "$scheme://$host/" 2>/dev/null | head -n 1)"
    fi
    [ -n "$p" ] && break
  done
  case $p in "" | DIRECT | direct) ;; *) printf '%s\n' "$p" ;; esac
}
debootstrap_source() { # sets $mirror and $proxy_env (http_proxy/https_proxy for debootstrap's downloads)
  local sources where scheme host var p
  proxy_env=()
  if [ -n "${HEARTH_DEBIAN_MIRROR:-}" ]; then
    mirror="$HEARTH_DEBIAN_MIRROR"
  else
    mapfile -t sources < <(apt_source_files)
    mapfile -t where < <(apt_source_locations)
    mirror="$(debian_mirror bookworm "${sources[@]}")" ||
      fail "no Debian archive (suite bookworm, stable, ..., not a security one) among the deb sources of apt (read: ${sources[*]:-nothing: no ${where[0]}, no ${where[1]}/*.list or *.sources}). Set HEARTH_DEBIAN_MIRROR to a Debian archive that has bookworm, e.g. HEARTH_DEBIAN_MIRROR=http://mirror.example.invalid/debian tests/package/run"
  fi
  scheme="${mirror%%:*}" host="${mirror#*://}" host="${host%%/*}" host="${host##*@}" host="${host%%:*}"
  case $scheme in http | https) ;; *) return 0 ;; esac
  var="${scheme}_proxy"
  [ -z "${!var:-}" ] || return 0 # a proxy set in the environment wins
  p="$(apt_proxy "$scheme" "$host")"
  [ -z "$p" ] || proxy_env=("$var=$p")
}
