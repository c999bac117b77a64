package shard_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/ringrelay/ringrelay/shard"
)

// bell is the simplest Doorbell: a channel with room for one ring, so rings
// coalesce. A relay loop rings through its reactor instead (Wake, RingLoop).
type bell chan struct{}

func (b bell) Ring() {
	select {
	case b <- struct{}{}:
	default: // a ring is already pending
	}
}

// Two loops on two goroutines: loop 0 sends frames to a connection that
// loop 1 owns, and loop 1 sleeps on its doorbell until they arrive.
func Example() {
	const loops = 2
	bells := make([]shard.Doorbell, loops)
	chans := make([]bell, loops)
	for k := range loops {
		chans[k] = make(bell, 1)
		bells[k] = chans[k]
	}
	mesh, err := shard.NewMesh(shard.QueueConfig{Size: shard.DefaultQueueSize, MaxPayload: 1 << 20}, bells)
	if err != nil {
		log.Fatal(err)
	}

	// Loop 1 places a connection: its ID says that loop 1 owns it.
	ids, err := shard.NewIDs(shard.Scheme{}, loops, 1)
	if err != nil {
		log.Fatal(err)
	}
	id := ids.Next()

	done := make(chan []string)
	go func() { // loop 1
		port := mesh.Port(1)
		var got []string
		for len(got) < 3 {
			port.Drain(64<<10, func(src int, dest uint32, payload []byte) {
				got = append(got, fmt.Sprintf("from loop %d to its own ID: %v, %q", src, dest == id, strings.TrimSuffix(string(payload), "\x00")))
			})
			if len(got) < 3 && port.Sleep() {
				<-chans[1]
				port.Awake()
			}
		}
		done <- got
	}()

	// Loop 0 routes by the header alone.
	port := mesh.Port(0)
	for i := range 3 {
		dst := shard.Owner(id, loops)
		if !port.Send(dst, id, fmt.Appendf(nil, "frame %d\x00", i)) {
			log.Fatal("queue full") // a loop would pause the sender instead
		}
	}
	port.Flush()
	for _, line := range <-done {
		fmt.Println(line)
	}
	// Output:
	// from loop 0 to its own ID: true, "frame 0"
	// from loop 0 to its own ID: true, "frame 1"
	// from loop 0 to its own ID: true, "frame 2"
}
