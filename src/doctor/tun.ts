/**
 * Check: the TUN/TAP driver. A VMM opens /dev/net/tun itself, often as its own uid (Firecracker's
 * jailer), so the node must exist, be the tun character device, and be world read-writable.
 */
import { type Stats, statSync } from "node:fs";
import { AlreadyExistsError, KernelError } from "../core/errors.js";
import { tapClose, tapCreateOpen } from "../kernel/tun.js";
import { finding, messageOf } from "./finding.js";
import type { DoctorContext, Finding } from "./types.js";

/** Path of the TUN/TAP clone device. */
export const TUN_NODE = "/dev/net/tun";

/** Major and minor of the tun misc device (Documentation/admin-guide/devices.txt: 10,200). */
export const TUN_DEVICE = { major: 10, minor: 200 } as const;

/** Splits a Linux dev_t as glibc's gnu_dev_major/gnu_dev_minor do (12-bit major, 20-bit minor). */
export function splitDev(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return { major, minor };
}

/** Name of the throw-away TAP the creation probe makes (≤ 15 bytes, unique per process). */
export function probeTapName(pid = process.pid): string {
  return `mvdoc-${pid.toString(36)}`;
}

function nodeFindings(st: Stats): Finding[] {
  const { major, minor } = splitDev(st.rdev);
  const mode = st.mode & 0o7777;
  const data = { path: TUN_NODE, major, minor, mode: `0${mode.toString(8)}` };
  if (!st.isCharacterDevice() || major !== TUN_DEVICE.major || minor !== TUN_DEVICE.minor) {
    return [
      finding("kernel.tun.device", "fail", `${TUN_NODE} is not the tun device (10,200)`, {
        detail: `found ${st.isCharacterDevice() ? `character device ${major},${minor}` : "something that is not a character device"}`,
        fix: `rm ${TUN_NODE} && mknod -m 0666 ${TUN_NODE} c 10 200`,
        data,
      }),
    ];
  }
  const out = [finding("kernel.tun.device", "ok", `${TUN_NODE} is the tun device (10,200)`, { data })];
  if ((mode & 0o666) !== 0o666) {
    out.push(
      finding(
        "kernel.tun.mode",
        "warn",
        `${TUN_NODE} is mode ${data.mode}: a VMM running as another uid cannot open it`,
        {
          detail:
            "Firecracker (and its jailer) open /dev/net/tun as the VMM's own uid; distributions ship the node 0666 through udev. Root-run VMMs still work.",
          fix: `chmod 0666 ${TUN_NODE}  (lasting: install udev, or a udev rule KERNEL=="tun", MODE="0666")`,
          data,
        },
      ),
    );
  } else {
    out.push(
      finding("kernel.tun.mode", "ok", `${TUN_NODE} is usable by every uid (mode ${data.mode})`, { data }),
    );
  }
  return out;
}

/**
 * Makes a TAP exactly as we do (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR|IFF_TUN_EXCL) and closes it at once.
 * It is never made persistent, so closing the descriptor unregisters it again (drivers/net/tun.c
 * `tun_detach`): the host is left as it was.
 */
function createProbe(): Finding {
  const name = probeTapName();
  try {
    tapClose(tapCreateOpen({ name }));
    return finding("kernel.tun.create", "ok", "a TAP can be created (probe deleted again)", {
      data: { probe: name },
    });
  } catch (e) {
    if (e instanceof AlreadyExistsError) {
      return finding(
        "kernel.tun.create",
        "info",
        `TAP creation not probed: an interface named ${name} exists`,
        {
          data: { probe: name },
        },
      );
    }
    const permission = e instanceof KernelError && e.isPermission;
    return finding("kernel.tun.create", "fail", "a TAP cannot be created", {
      detail: messageOf(e),
      fix: permission
        ? "run mvnet as root or with CAP_NET_ADMIN in this network namespace"
        : "load the tun module (modprobe tun; CONFIG_TUN)",
      data: { probe: name },
    });
  }
}

/**
 * Check `kernel.tun.*`: the device node (fail when missing or not 10,200), its mode (warn unless
 * 0666), and a creation probe (fail when the kernel refuses).
 */
export async function checkTun(_ctx: DoctorContext): Promise<Finding[]> {
  let st: Stats;
  try {
    st = statSync(TUN_NODE);
  } catch (e) {
    return [
      finding("kernel.tun.device", "fail", `${TUN_NODE} does not exist`, {
        detail: messageOf(e),
        fix: `modprobe tun (CONFIG_TUN); if the node is still missing: mkdir -p /dev/net && mknod -m 0666 ${TUN_NODE} c 10 200`,
        data: { path: TUN_NODE },
      }),
    ];
  }
  const node = nodeFindings(st);
  if (node.some((f) => f.severity === "fail")) return node;
  return [...node, createProbe()];
}
