// Package cluster joins ringrelay nodes through NATS.
package cluster
