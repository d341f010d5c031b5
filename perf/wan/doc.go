// Package wan emulates a wide-area link between two Linux network
// namespaces in user space, for kernels without the netem qdisc.
//
// Each namespace gets a TUN device (IFF_TUN|IFF_NO_PI, MTU 1500) and an
// address on one /30; the two namespaces share nothing else, so every packet
// between them crosses the forwarder. The forwarder reads IP packets from one
// TUN and writes them to the other after random loss, serialization at the
// configured bit rate behind a bounded drop-tail queue (a router's output
// port), and a one-way propagation delay with optional jitter. Packets leave
// in arrival order: jitter delays a packet, it never lets it overtake one
// read before it.
//
// Per direction, one goroutine reads (poll, then read until the device is
// empty) and one writes, sleeping with clock_nanosleep(TIMER_ABSTIME) until
// the head packet is due; packets are preallocated buffers passed through
// channels, so the forwarder allocates nothing per packet. Stats count what
// it dropped and why, its queue and how late it wrote, so a reader of the
// results can tell the emulator was not the bottleneck.
package wan
