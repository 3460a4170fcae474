#!/usr/bin/python3
"""Drives the Understudy tray the way a user does, over D-Bus: finds the item registered on
org.kde.StatusNotifierWatcher, reads its com.canonical.dbusmenu layout, and clicks items with
Event(id, "clicked", ...). Needs Debian's python3-gi (run with /usr/bin/python3).

  tray_check.py wait-registered [TIMEOUT]       print the item's bus name and path
  tray_check.py layout                          print the menu as an indented tree of labels
  tray_check.py wait-label REGEX [TIMEOUT]      wait until some label matches; print it
  tray_check.py wait-enabled REGEX [TIMEOUT]    same, and the item must be enabled
  tray_check.py click REGEX                     click the first enabled item whose label matches
  tray_check.py wait-notification REGEX LOG [TIMEOUT]   wait for a Notify call in a dbus-monitor log
  tray_check.py count-notifications REGEX LOG   how many Notify calls of the log match
  tray_check.py notification-times REGEX LOG    the D-Bus time (s) of each matching Notify call
"""

import re
import sys
import time

from gi.repository import Gio, GLib

WATCHER = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"


def bus():
    return Gio.bus_get_sync(Gio.BusType.SESSION, None)


def call(conn, name, path, iface, method, args, reply):
    return conn.call_sync(name, path, iface, method, args, GLib.VariantType(reply) if reply else None,
                          Gio.DBusCallFlags.NONE, 5000, None)


def get_prop(conn, name, path, iface, prop):
    v = call(conn, name, path, "org.freedesktop.DBus.Properties", "Get",
             GLib.Variant("(ss)", (iface, prop)), "(v)")
    return v.unpack()[0]


def registered_items(conn):
    try:
        return get_prop(conn, WATCHER, WATCHER_PATH, WATCHER, "RegisteredStatusNotifierItems")
    except GLib.Error:
        return []


def item_paths(conn, name):
    """Object paths of StatusNotifierItems exported by `name` (libayatana uses
    /org/ayatana/NotificationItem/<id>; others /StatusNotifierItem)."""
    base = "/org/ayatana/NotificationItem"
    try:
        xml = call(conn, name, base, "org.freedesktop.DBus.Introspectable", "Introspect", None, "(s)").unpack()[0]
        info = Gio.DBusNodeInfo.new_for_xml(xml)
        paths = [f"{base}/{n.path}" for n in info.nodes]
        if paths:
            return paths
    except GLib.Error:
        pass
    return ["/StatusNotifierItem"]


def find_item(conn, timeout=30.0):
    """The (bus name, object path) of the Understudy item. Watchers list either
    ":1.7/org/ayatana/NotificationItem/understudy" or only the bus name ":1.7"."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = []
        for entry in registered_items(conn):
            slash = entry.find("/")
            if slash > 0:
                found.append((entry[:slash], entry[slash:]))
            else:
                found.extend((entry, p) for p in item_paths(conn, entry))
        for name, path in found:
            if "understudy" in path.lower():
                return name, path
        if len(found) == 1:
            return found[0]
        time.sleep(0.2)
    raise SystemExit(f"no tray item registered on {WATCHER} within {timeout}s")


def menu_of(conn):
    name, path = find_item(conn)
    menu_path = get_prop(conn, name, path, "org.kde.StatusNotifierItem", "Menu")
    return name, menu_path


def layout(conn):
    """The menu as nested dicts: {id, label, enabled, type, toggle_state, children}."""
    name, menu_path = menu_of(conn)
    v = call(conn, name, menu_path, "com.canonical.dbusmenu", "GetLayout",
             GLib.Variant("(iias)", (0, -1, [])), "(u(ia{sv}av))")
    _revision, root = v.unpack()

    def walk(node):
        ident, props, children = node
        return {
            "id": ident,
            "label": props.get("label", "").replace("_", "") if isinstance(props.get("label"), str) else "",
            "enabled": props.get("enabled", True),
            "visible": props.get("visible", True),
            "type": props.get("type", "standard"),
            "toggle_state": props.get("toggle-state", -1),
            "children": [walk(c) for c in children],
        }

    return walk(root)


def flatten(node, depth=0):
    yield depth, node
    for c in node["children"]:
        yield from flatten(c, depth + 1)


def print_layout(tree):
    for depth, n in flatten(tree):
        if n["id"] == 0:
            continue
        if n["type"] == "separator":
            print("  " * (depth - 1) + "----")
            continue
        flags = []
        if not n["enabled"]:
            flags.append("disabled")
        if n["toggle_state"] == 1:
            flags.append("checked")
        print("  " * (depth - 1) + n["label"] + (f"  [{', '.join(flags)}]" if flags else ""))


def find_label(tree, pattern, enabled=False):
    rx = re.compile(pattern)
    for _, n in flatten(tree):
        if n["id"] != 0 and rx.search(n["label"]) and (not enabled or n["enabled"]):
            return n
    return None


def wait_label(conn, pattern, timeout, enabled=False):
    deadline = time.time() + timeout
    while True:
        node = find_label(layout(conn), pattern, enabled)
        if node:
            return node
        if time.time() > deadline:
            print_layout(layout(conn))
            raise SystemExit(f"no {'enabled ' if enabled else ''}menu item matching /{pattern}/ within {timeout}s")
        time.sleep(0.25)


def click(conn, pattern):
    node = wait_label(conn, pattern, 10, enabled=True)
    name, menu_path = menu_of(conn)
    # Event(id, eventId, data, timestamp): exactly what a panel sends when the user clicks.
    call(conn, name, menu_path, "com.canonical.dbusmenu", "Event",
         GLib.Variant("(isvu)", (node["id"], "clicked", GLib.Variant("s", ""), int(time.time()))), None)
    print(f"clicked {node['label']!r} (id {node['id']})")


def notifications(log):
    """(time, "summary | body | ...") of each Notify call in a dbus-monitor log."""
    with open(log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    out = []
    for head, call_text in zip(text.split("member=Notify")[:-1], text.split("member=Notify")[1:]):
        times = re.findall(r"time=([0-9.]+)", head.rsplit("method call", 1)[-1])
        strings = re.findall(r'^\s*string "(.*)"$', call_text.split("method call")[0], re.M)
        out.append((float(times[-1]) if times else 0.0, " | ".join(strings)))
    return out


def wait_notification(pattern, log, timeout):
    """dbus-monitor prints each Notify call's arguments; the summary and body are string lines."""
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for call_text in text.split("member=Notify")[1:]:
            strings = re.findall(r'^\s*string "(.*)"$', call_text.split("method call")[0], re.M)
            joined = " | ".join(strings)
            if rx.search(joined):
                print(joined)
                return
        time.sleep(0.25)
    raise SystemExit(f"no notification matching /{pattern}/ in {log} within {timeout}s")


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    conn = bus()
    if cmd == "wait-registered":
        name, path = find_item(conn, float(args[0]) if args else 30.0)
        print(f"{name} {path}")
    elif cmd == "layout":
        print_layout(layout(conn))
    elif cmd == "wait-label":
        print(wait_label(conn, args[0], float(args[1]) if len(args) > 1 else 30.0)["label"])
    elif cmd == "wait-enabled":
        print(wait_label(conn, args[0], float(args[1]) if len(args) > 1 else 30.0, enabled=True)["label"])
    elif cmd == "click":
        click(conn, args[0])
    elif cmd == "count-notifications":
        rx = re.compile(args[0])
        print(sum(1 for _, text in notifications(args[1]) if rx.search(text)))
    elif cmd == "notification-times":
        rx = re.compile(args[0])
        for t, text in notifications(args[1]):
            if rx.search(text):
                print(f"{t:.6f} {text}")
    elif cmd == "wait-notification":
        wait_notification(args[0], args[1], float(args[2]) if len(args) > 2 else 15.0)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
