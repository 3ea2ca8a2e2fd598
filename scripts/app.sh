#!/usr/bin/env bash
# Set up (run-time dependencies only) and launch SqueezeBERT Desktop.
source "$(dirname "$0")/setup.sh" ""
# Qt's xcb platform plugin needs a few X libraries that minimal Debian/Ubuntu images lack.
if [ -n "${DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
  xcb_plugin=$(python -c "import PySide6, pathlib; print(pathlib.Path(PySide6.__file__).parent / 'Qt/plugins/platforms/libqxcb.so')")
  if ldd "$xcb_plugin" 2>/dev/null | grep -q "not found" || ! ldconfig -p | grep -q libxcb-cursor.so.0; then
    XCB_PACKAGES="libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0 libxcb-xkb1 libxcb-shape0 libxcb-randr0 libxcb-xinerama0"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "Installing the X libraries Qt needs: $XCB_PACKAGES" >&2
      (apt-get install -y -qq $XCB_PACKAGES || { apt-get update -qq && apt-get install -y -qq $XCB_PACKAGES; }) >/dev/null
    else
      echo "Qt needs these X libraries: sudo apt-get install $XCB_PACKAGES" >&2
    fi
  fi
elif [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ] && [ $# -eq 0 ]; then
  echo "No display found (DISPLAY is not set). Run it on a desktop, under Xvfb, or use the headless commands:" >&2
  echo "  bash scripts/app.sh analyze --task sentiment \"text\"" >&2
  exit 1
fi
exec python main.py "$@"
