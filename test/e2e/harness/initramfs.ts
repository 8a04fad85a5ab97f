/**
 * Builds the guest's initramfs at test time: Debian's busybox-static with all its applet links, the
 * static `nettool` compiled from guest/nettool.c, and guest/init.sh as /init.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { type CpioEntry, cpioNewc } from "./cpio.js";

const GUEST_DIR = new URL("../guest/", import.meta.url).pathname;

/** Where busybox-static puts its binary on Debian. */
export const BUSYBOX = "/bin/busybox";

/**
 * True when a 64-bit little-endian ELF has a PT_INTERP program header, i.e. needs a dynamic loader
 * the initramfs does not have (elf(5)).
 */
export function hasInterpreter(elf: Buffer): boolean {
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) {
    throw new Error("not a 64-bit little-endian ELF file");
  }
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3) return true; // PT_INTERP
  }
  return false;
}

/** Compiles guest/nettool.c as a static binary; returns its bytes. Needs gcc and libc6-dev. */
export function buildNettool(): Buffer {
  const dir = mkdtempSync(join(tmpdir(), "mvnet-nettool-"));
  try {
    const out = join(dir, "nettool");
    execFileSync("gcc", ["-static", "-Os", "-Wall", "-o", out, join(GUEST_DIR, "nettool.c")], {
      stdio: "pipe",
    });
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The initramfs as a gzip'd newc cpio archive.
 * @param busybox path of a statically linked busybox (Debian's busybox-static).
 * @throws when busybox is not static or gcc fails.
 */
export function buildInitramfs(busybox = BUSYBOX): Buffer {
  const bin = readFileSync(busybox);
  if (hasInterpreter(bin)) {
    throw new Error(`${busybox} is dynamically linked; install busybox-static`);
  }
  const applets = execFileSync(busybox, ["--list"], { encoding: "utf8" }).split("\n").filter(Boolean);
  const entries: CpioEntry[] = [
    ...["bin", "dev", "proc", "sys", "tmp", "www"].map((path) => ({ kind: "dir" as const, path })),
    { kind: "char", path: "dev/console", major: 5, minor: 1, mode: 0o600 },
    { kind: "char", path: "dev/null", major: 1, minor: 3, mode: 0o666 },
    { kind: "file", path: "bin/busybox", data: bin, mode: 0o755 },
    ...applets
      .filter((a) => a !== "busybox")
      .map((a) => ({ kind: "symlink" as const, path: `bin/${a}`, target: "busybox" })),
    { kind: "file", path: "bin/nettool", data: buildNettool(), mode: 0o755 },
    { kind: "file", path: "init", data: readFileSync(join(GUEST_DIR, "init.sh")), mode: 0o755 },
  ];
  return gzipSync(cpioNewc(entries), { level: 6 });
}
