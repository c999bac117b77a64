module github.com/ringrelay/ringrelay

go 1.26.0

require (
	github.com/HdrHistogram/hdrhistogram-go v1.4.0
	github.com/elastic/go-seccomp-bpf v1.6.0
	github.com/pawelgaczynski/giouring v0.0.0-20230826085535-69588b89acb9
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.50.0
)

require golang.org/x/net v0.41.0 // indirect
