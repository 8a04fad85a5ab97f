import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/core/errors.js";
import { expandPublish, hostIpsClash, parsePublish } from "../../src/host/publish.js";

describe("parsePublish", () => {
  it("reads Docker-style specs", () => {
    expect(parsePublish("80")).toEqual({ guestPort: 80 });
    expect(parsePublish("8080:80")).toEqual({ guestPort: 80, hostPort: 8080 });
    expect(parsePublish("8080:80/udp")).toEqual({ guestPort: 80, hostPort: 8080, protocol: "udp" });
    expect(parsePublish("127.0.0.1:8080:80/TCP")).toEqual({
      guestPort: 80,
      hostPort: 8080,
      hostIp: "127.0.0.1",
      protocol: "tcp",
    });
    expect(parsePublish("127.0.0.1::53/udp")).toEqual({
      guestPort: 53,
      hostIp: "127.0.0.1",
      protocol: "udp",
    });
    expect(parsePublish("8000-8002:9000-9002")).toEqual({
      guestPort: { start: 9000, end: 9002 },
      hostPort: { start: 8000, end: 8002 },
    });
  });

  it("refuses malformed text with the field at fault", () => {
    const field = (t: string) => {
      try {
        parsePublish(t);
      } catch (e) {
        expect(e).toBeInstanceOf(ValidationError);
        return (e as ValidationError).field;
      }
      return "no error";
    };
    expect(field("")).toBe("publish");
    expect(field("a:b:c:d")).toBe("publish");
    expect(field("80/icmp")).toBe("protocol");
    expect(field("80/tcp/udp")).toBe("publish");
    expect(field("x:80")).toBe("hostPort");
    expect(field("8080:")).toBe("guestPort");
    expect(field("10.1:8080:80")).toBe("hostIp");
  });
});

describe("expandPublish", () => {
  it("gives one wanted host port per guest port", () => {
    expect(expandPublish(["8080:80", "53/udp"])).toEqual([
      { protocol: "tcp", hostIp: "0.0.0.0", guestPort: 80, host: { kind: "exact", port: 8080 } },
      { protocol: "udp", hostIp: "0.0.0.0", guestPort: 53, host: { kind: "ephemeral" } },
    ]);
    expect(expandPublish(["8000-8001:9000-9001"]).map((w) => [w.host, w.guestPort])).toEqual([
      [{ kind: "exact", port: 8000 }, 9000],
      [{ kind: "exact", port: 8001 }, 9001],
    ]);
    expect(expandPublish(["9000-9001"]).map((w) => w.host.kind)).toEqual(["ephemeral", "ephemeral"]);
    expect(expandPublish([{ guestPort: 80, hostPort: { start: 8000, end: 8100 } }])[0]?.host).toEqual({
      kind: "range",
      start: 8000,
      end: 8100,
    });
    expect(expandPublish([{ guestPort: 80, hostPort: 0 }])[0]?.host).toEqual({ kind: "ephemeral" });
  });

  it("refuses ranges that do not line up, duplicates, bad values and too many ports", () => {
    expect(() => expandPublish(["8000:9000-9001"])).toThrow(/same length/);
    expect(() => expandPublish(["8000-8002:9000-9001"])).toThrow(/same length/);
    expect(() => expandPublish(["8080:80", "8080:81"])).toThrow(/asked twice/);
    expect(() => expandPublish([{ guestPort: 0 }])).toThrow(ValidationError);
    expect(() => expandPublish([{ guestPort: { start: 9, end: 8 } }])).toThrow(/empty/);
    expect(() => expandPublish([{ guestPort: 80, protocol: "sctp" }])).toThrow(ValidationError);
    expect(() => expandPublish(["1-2000"])).toThrow(/more than 1024/);
    // tcp and udp, or two host addresses, are different keys.
    expect(expandPublish(["8080:80", "8080:80/udp", "127.0.0.1:8080:80"])).toHaveLength(3);
  });

  it("clash rules follow bind(2) for IPv4", () => {
    expect(hostIpsClash("0.0.0.0", "127.0.0.1")).toBe(true);
    expect(hostIpsClash("127.0.0.1", "127.0.0.1")).toBe(true);
    expect(hostIpsClash("127.0.0.1", "192.0.2.2")).toBe(false);
  });
});
