# RPM %preun ($1 = 0 erase, 1 upgrade): %systemd_preun semantics — on erase, disable and stop the unit.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now hearth.service >/dev/null 2>&1 || :
fi
:
