// The e2e guest's initramfs writer (test/e2e/harness/cpio.ts), read back with an independent parser of
// the newc format (Documentation/driver-api/early-userspace/buffer-format.rst).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { cpioNewc } from "../e2e/harness/cpio.js";
import { hasInterpreter } from "../e2e/harness/initramfs.js";

interface Entry {
  name: string;
  mode: number;
  uid: number;
  rdev: [number, number];
  data: Buffer;
}

function parseNewc(buf: Buffer): Entry[] {
  const out: Entry[] = [];
  let off = 0;
  for (;;) {
    expect(off % 4).toBe(0);
    expect(buf.toString("ascii", off, off + 6)).toBe("070701");
    const field = (i: number) =>
      Number.parseInt(buf.toString("ascii", off + 6 + i * 8, off + 14 + i * 8), 16);
    const nameSize = field(11);
    const size = field(6);
    const name = buf.toString("utf8", off + 110, off + 110 + nameSize - 1);
    expect(buf[off + 110 + nameSize - 1]).toBe(0);
    const dataOff = Math.ceil((off + 110 + nameSize) / 4) * 4;
    if (name === "TRAILER!!!") return out;
    out.push({
      name,
      mode: field(1),
      uid: field(2),
      rdev: [field(9), field(10)],
      data: buf.subarray(dataOff, dataOff + size),
    });
    off = Math.ceil((dataOff + size) / 4) * 4;
  }
}

describe("cpioNewc", () => {
  it("writes directories, files, symlinks and device nodes, 4-byte aligned, owned by root", () => {
    const archive = cpioNewc([
      { kind: "dir", path: "bin" },
      { kind: "file", path: "bin/busybox", data: Buffer.from("12345"), mode: 0o755 },
      { kind: "symlink", path: "bin/sh", target: "busybox" },
      { kind: "dir", path: "dev" },
      { kind: "char", path: "dev/console", major: 5, minor: 1 },
      { kind: "file", path: "init", data: Buffer.from("#!/bin/sh\n") },
    ]);
    expect(archive.length % 4).toBe(0);
    const entries = parseNewc(archive);
    expect(entries.map((e) => [e.name, e.mode.toString(8)])).toEqual([
      ["bin", "40755"],
      ["bin/busybox", "100755"],
      ["bin/sh", "120777"],
      ["dev", "40755"],
      ["dev/console", "20600"],
      ["init", "100644"],
    ]);
    expect(entries.every((e) => e.uid === 0)).toBe(true);
    expect(entries[1]?.data.toString()).toBe("12345");
    expect(entries[2]?.data.toString()).toBe("busybox");
    expect(entries[4]?.rdev).toEqual([5, 1]);
    expect(entries[5]?.data.toString()).toBe("#!/bin/sh\n");
  });

  it("gives the same bytes for the same input", () => {
    const e = [{ kind: "file" as const, path: "a", data: Buffer.from("x") }];
    expect(cpioNewc(e).equals(cpioNewc(e))).toBe(true);
  });
});

describe("hasInterpreter", () => {
  it("finds PT_INTERP in a dynamically linked program (node itself)", () => {
    expect(hasInterpreter(readFileSync(process.execPath))).toBe(true);
  });
  it("finds none in an ELF file whose program headers have no PT_INTERP", () => {
    const elf = Buffer.alloc(64 + 56);
    elf.writeUInt32BE(0x7f454c46, 0);
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little-endian
    elf.writeBigUInt64LE(64n, 0x20); // e_phoff
    elf.writeUInt16LE(56, 0x36); // e_phentsize
    elf.writeUInt16LE(1, 0x38); // e_phnum
    elf.writeUInt32LE(1, 64); // PT_LOAD
    expect(hasInterpreter(elf)).toBe(false);
    elf.writeUInt32LE(3, 64); // PT_INTERP
    expect(hasInterpreter(elf)).toBe(true);
  });
  it("rejects what is not an ELF file", () => {
    expect(() => hasInterpreter(Buffer.from("#!/bin/sh\necho hello world, this is not ELF\n"))).toThrow(
      /ELF/,
    );
  });
});
