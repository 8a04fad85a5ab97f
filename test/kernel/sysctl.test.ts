import { expect, it } from "vitest";
import { KernelError, ValidationError } from "../../src/core/errors.js";
import { ifaceSysctlPath, sysctlGet, sysctlSet } from "../../src/kernel/sysctl.js";
import { kernelDescribe, readSysctl, sh } from "../helpers/kernel.js";

kernelDescribe("sysctl", () => {
  it("reads and writes net/ipv4/ip_forward of this namespace", () => {
    expect(sysctlGet("net/ipv4/ip_forward")).toBe(readSysctl("net/ipv4/ip_forward"));
    sysctlSet("net/ipv4/ip_forward", 1);
    expect(readSysctl("net/ipv4/ip_forward")).toBe("1");
    expect(sysctlGet("net/ipv4/ip_forward")).toBe("1");
    sysctlSet("net/ipv4/ip_forward", "0");
    expect(readSysctl("net/ipv4/ip_forward")).toBe("0");
  });

  it("keeps the tab of a multi-value key and drops only the trailing newline", () => {
    sysctlSet("net/ipv4/ip_local_port_range", "32768 60999");
    expect(sysctlGet("net/ipv4/ip_local_port_range")).toBe("32768\t60999");
  });

  it("writes a per-interface key of an interface whose name has a dot", () => {
    sh("ip", ["link", "add", "eth0.10", "type", "veth", "peer", "name", "eth0.11"]);
    const path = ifaceSysctlPath("ipv4", "eth0.10", "route_localnet");
    expect(path).toBe("net/ipv4/conf/eth0.10/route_localnet");
    expect(sysctlGet(path)).toBe("0");
    sysctlSet(path, 1);
    expect(readSysctl("net/ipv4/conf/eth0.10/route_localnet")).toBe("1");
    // only that interface changed
    expect(readSysctl("net/ipv4/conf/eth0.11/route_localnet")).toBe("0");
    expect(readSysctl("net/ipv4/conf/all/route_localnet")).toBe("0");
    sysctlSet(ifaceSysctlPath("ipv6", "eth0.10", "disable_ipv6"), 1);
    expect(readSysctl("net/ipv6/conf/eth0.10/disable_ipv6")).toBe("1");
  });

  it.each([
    "",
    "/proc/sys/net/ipv4/ip_forward",
    "net/ipv4/../ipv4/ip_forward",
    "../../etc/passwd",
    "net//ipv4/ip_forward",
    "net/ipv4/ip_forward/",
    "net/./ipv4/ip_forward",
    "net/ipv4/ip forward",
    "net\\ipv4",
  ])("rejects the path %j with ValidationError", (path) => {
    expect(() => sysctlGet(path)).toThrow(ValidationError);
    expect(() => sysctlSet(path, 1)).toThrow(expect.objectContaining({ field: "path" }));
  });

  it.each(["", "1\n0", "1\r"])("rejects the value %j", (value) => {
    const before = readSysctl("net/ipv4/ip_forward");
    expect(() => sysctlSet("net/ipv4/ip_forward", value)).toThrow(
      expect.objectContaining({ field: "value" }),
    );
    expect(readSysctl("net/ipv4/ip_forward")).toBe(before);
  });

  it("reports an unknown key as KernelError ENOENT naming the write", () => {
    let err: unknown;
    try {
      sysctlSet("net/ipv4/conf/nosuchif/forwarding", 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KernelError);
    expect(err).toMatchObject({
      code: "ENOENT",
      syscall: "write(/proc/sys/net/ipv4/conf/nosuchif/forwarding)",
    });
    expect(() => sysctlGet("net/ipv4/nosuchkey")).toThrow(
      expect.objectContaining({ code: "ENOENT", syscall: "read(/proc/sys/net/ipv4/nosuchkey)" }),
    );
  });

  it("reports a value the kernel refuses as KernelError EINVAL", () => {
    expect(() => sysctlSet("net/ipv4/ip_local_port_range", "60999 32768")).toThrow(
      expect.objectContaining({ code: "EINVAL" }),
    );
  });

  it("ifaceSysctlPath validates its parts", () => {
    expect(() => ifaceSysctlPath("ipv5" as "ipv4", "eth0", "forwarding")).toThrow(
      expect.objectContaining({ field: "family" }),
    );
    expect(() => ifaceSysctlPath("ipv4", "../x", "forwarding")).toThrow(
      expect.objectContaining({ field: "ifname" }),
    );
    expect(() => ifaceSysctlPath("ipv4", "eth0", "a/b")).toThrow(expect.objectContaining({ field: "key" }));
    expect(ifaceSysctlPath("ipv4", "all", "rp_filter")).toBe("net/ipv4/conf/all/rp_filter");
  });
});
