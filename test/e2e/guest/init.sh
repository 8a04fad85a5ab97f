#!/bin/sh
# /init of the end-to-end tests' guest (busybox-static). The network is configured by the guest kernel
# itself, from the `ip=` boot argument our library renders; nothing here sets an address or a route.
# The harness (test/e2e/harness/guest.ts) drives the guest over the serial console: it writes
# "ID BASE64" lines; each decoded command runs under sh, its output framed by MVNET-BEGIN/MVNET-END.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
# From here on kernel messages go to dmesg only, so they never cut into a command's output.
echo 1 > /proc/sys/kernel/printk
stty -echo

# Standing services. The CGI answers who it is and whom it saw, and remembers every client.
mkdir -p /www/cgi-bin
echo "mvnet e2e guest" > /www/index.html
cat > /www/cgi-bin/whoami <<'CGI'
#!/bin/sh
echo "$REMOTE_ADDR" >> /tmp/http-clients
printf 'Content-Type: text/plain\r\n\r\n'
echo "guest=$(ip -4 -o addr show dev eth0 | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p') client=$REMOTE_ADDR"
CGI
chmod 755 /www/cgi-bin/whoami
: > /tmp/http-clients
httpd -p 0.0.0.0:80 -h /www
nettool udp-serve 9000 > /tmp/udp-log 2>&1 &
# Every IPv4 packet the NIC delivers, whoever it is for: what this guest really received.
nettool sniff eth0 > /tmp/ip-log 2>&1 &

read -r up _ < /proc/uptime
echo "MVNET-READY uptime=$up"
while read -r id b64; do
  [ -n "$b64" ] || continue
  echo "$b64" | base64 -d > /tmp/cmd.sh
  echo "MVNET-BEGIN $id"
  sh /tmp/cmd.sh < /dev/null 2>&1
  echo "MVNET-END $id $?"
done
poweroff -f
