#!/bin/sh
# Install (or with --uninstall remove) the unpacked MSFM Desktop folder for all users
# (as root: /opt/msfm-desktop, /usr/local/bin, /usr/local/share) or for the current user
# (~/.local/opt/msfm-desktop, ~/.local/bin, ~/.local/share). Nothing else on the system
# is touched; the user data folder (~/.local/share/MSFM Desktop: fine-tuned models) is kept.
set -eu
HERE=$(dirname "$(readlink -f "$0")")
if [ "$(id -u)" = 0 ]; then
  PREFIX=${PREFIX:-/usr/local}; DEST=${DEST:-/opt/msfm-desktop}
else
  PREFIX=${PREFIX:-$HOME/.local}; DEST=${DEST:-$HOME/.local/opt/msfm-desktop}
fi
APPS="$PREFIX/share/applications"; ICONS="$PREFIX/share/icons/hicolor"

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$PREFIX/bin/msfm-desktop" "$PREFIX/bin/msfm" "$APPS/msfm-desktop.desktop"
  for s in 16 24 32 48 64 128 256 512; do rm -f "$ICONS/${s}x${s}/apps/msfm-desktop.png"; done
  rm -f "$ICONS/scalable/apps/msfm-desktop.svg"
  rm -rf "$DEST"
  echo "MSFM Desktop removed from $DEST"
  exit 0
fi

if [ "$HERE" != "$(readlink -f "$DEST" 2>/dev/null || echo "$DEST")" ]; then
  rm -rf "$DEST.new"
  mkdir -p "$(dirname "$DEST")"
  cp -a "$HERE" "$DEST.new"
  rm -rf "$DEST"
  mv "$DEST.new" "$DEST"
fi
mkdir -p "$PREFIX/bin" "$APPS" "$ICONS/scalable/apps"
ln -sf "$DEST/msfm-desktop" "$PREFIX/bin/msfm-desktop"
ln -sf "$DEST/msfm" "$PREFIX/bin/msfm"
for s in 16 24 32 48 64 128 256 512; do
  mkdir -p "$ICONS/${s}x${s}/apps"
  cp "$DEST/_internal/resources/icons/msfm-desktop-$s.png" "$ICONS/${s}x${s}/apps/msfm-desktop.png"
done
cp "$DEST/_internal/resources/icons/msfm-desktop.svg" "$ICONS/scalable/apps/msfm-desktop.svg"
# The menu entry runs the installed folder by absolute path: it works without PATH.
sed -e "s|^Exec=.*|Exec=\"$DEST/msfm-desktop\" %f|" -e "s|^TryExec=.*|TryExec=$DEST/msfm-desktop|" \
  "$DEST/msfm-desktop.desktop" > "$APPS/msfm-desktop.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$ICONS" || true
echo "MSFM Desktop installed in $DEST; commands msfm-desktop and msfm in $PREFIX/bin; menu entry in $APPS"
