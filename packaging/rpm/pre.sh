# RPM %pre: the service user before files owned by it are unpacked (%sysusers_create_compat semantics).
if [ -x /usr/bin/systemd-sysusers ]; then
    printf '%s\n' 'u hearth - "Hearth AI appliance" /var/lib/hearth /usr/sbin/nologin' 'm hearth video' 'm hearth render' |
        systemd-sysusers --replace=/usr/lib/sysusers.d/hearth.conf - || :
fi
if ! getent passwd hearth >/dev/null; then
    getent group hearth >/dev/null || groupadd -r hearth
    useradd -r -g hearth -d /var/lib/hearth -M -s /usr/sbin/nologin -c "Hearth AI appliance" hearth
    for g in video render; do
        getent group "$g" >/dev/null || groupadd -r "$g"
        usermod -a -G "$g" hearth
    done
fi
:
