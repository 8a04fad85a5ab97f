import { createSocket, type Socket } from "node:dgram";
import { createServer, type Server } from "node:net";
import { afterEach, expect, it } from "vitest";
import { ValidationError } from "../../src/core/errors.js";
import { isPortFree } from "../../src/kernel/probe.js";
import { kernelDescribe, sh } from "../helpers/kernel.js";

const listenTcp = (host: string, port: number): Promise<Server> =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen({ host, port }, () => resolve(s));
  });
const bindUdp = (address: string, port: number): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    s.once("error", reject);
    s.bind({ address, port }, () => resolve(s));
  });

kernelDescribe("isPortFree", () => {
  const open: Array<{ close(): unknown }> = [];
  afterEach(() => {
    for (const s of open.splice(0)) s.close();
  });

  it("tcp: free, then taken by a listener, on the same address and via 0.0.0.0", async () => {
    expect(await isPortFree("tcp", "127.0.0.1", 18080)).toBe(true);
    // the probe released the port: a real listener can take it right after
    open.push(await listenTcp("127.0.0.1", 18080));
    expect(await isPortFree("tcp", "127.0.0.1", 18080)).toBe(false);
    expect(await isPortFree("tcp", "0.0.0.0", 18080)).toBe(false);
    expect(await isPortFree("tcp", "::", 18080)).toBe(false);
    expect(await isPortFree("udp", "127.0.0.1", 18080)).toBe(true);
  });

  it("tcp: a listener on 0.0.0.0 takes the port on every address", async () => {
    sh("ip", ["addr", "add", "192.0.2.7/32", "dev", "lo"]);
    open.push(await listenTcp("0.0.0.0", 18081));
    expect(await isPortFree("tcp", "192.0.2.7", 18081)).toBe(false);
    expect(await isPortFree("tcp", "127.0.0.1", 18081)).toBe(false);
  });

  it("udp: free, then taken; another address is still free", async () => {
    sh("ip", ["addr", "add", "192.0.2.8/32", "dev", "lo"]);
    expect(await isPortFree("udp", "127.0.0.1", 5353)).toBe(true);
    open.push(await bindUdp("127.0.0.1", 5353));
    expect(await isPortFree("udp", "127.0.0.1", 5353)).toBe(false);
    expect(await isPortFree("udp", "0.0.0.0", 5353)).toBe(false);
    expect(await isPortFree("udp", "192.0.2.8", 5353)).toBe(true);
    expect(await isPortFree("tcp", "127.0.0.1", 5353)).toBe(true);
  });

  it("an address that is not on this host is a ValidationError naming it", async () => {
    await expect(isPortFree("tcp", "198.51.100.77", 8080)).rejects.toMatchObject({
      field: "address",
      code: "ERR_ADDRESS_NOT_LOCAL",
      message: expect.stringContaining("198.51.100.77"),
    });
    await expect(isPortFree("udp", "198.51.100.77", 8080)).rejects.toBeInstanceOf(ValidationError);
  });

  it.each([
    ["icmp", "127.0.0.1", 80, "protocol"],
    ["tcp", "127.0.0.1", 0, "port"],
    ["tcp", "127.0.0.1", 65536, "port"],
    ["tcp", "127.0.0.1", 1.5, "port"],
    ["tcp", "uplink0", 80, "address"],
    ["tcp", "10.1", 80, "address"],
  ])("rejects %s %s:%s (field %s) before binding", async (proto, addr, port, field) => {
    await expect(isPortFree(proto as "tcp", addr, port)).rejects.toMatchObject({ field });
  });
});
