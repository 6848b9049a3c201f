# RPM %postun ($1 = 0 erase, 1 upgrade): %systemd_postun_with_restart semantics — after an upgrade, restart the
# daemon on the new binary (it applies database migrations at start). Erase keeps /var/lib/hearth (RPM has no
# purge): remove it by hand to delete the database and models.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart hearth.service >/dev/null 2>&1 || :
    fi
fi
:
