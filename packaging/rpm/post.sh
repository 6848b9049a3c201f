# RPM %post ($1 = 1 install, 2 upgrade): %systemd_post semantics — on first install apply the preset (the
# package ships 90-hearth.preset, "enable hearth.service") and start it where systemd runs.
install -d -o hearth -g hearth -m 0750 /var/lib/hearth
# The config may hold a database password or the metrics token: root writes it, the service reads it.
chown root:hearth /etc/hearth /etc/hearth/hearth.toml
chmod 0750 /etc/hearth
chmod 0640 /etc/hearth/hearth.toml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemd-tmpfiles --create hearth-power.conf >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl --no-reload preset hearth.service >/dev/null 2>&1 || :
        systemctl start hearth.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 1 ]; then
    echo "Hearth: dashboard and API at http://$(hostname 2>/dev/null || echo localhost):8383/ (bind in /etc/hearth/hearth.toml)"
    echo "Hearth: sign in as 'admin' with the password in /var/lib/hearth/initial-admin-password (written on the first start)"
    [ -d /run/systemd/system ] || echo "Hearth: systemd is not running here; start the daemon with: runuser -u hearth -- hearth --config /etc/hearth/hearth.toml serve"
fi
:
