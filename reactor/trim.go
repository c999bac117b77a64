package reactor

// Trim gives back what the loop keeps for reuse (see Loop.Trim): the free
// output chunks of its pool and what its engine keeps (engine.trim). Only
// free memory goes: queued output, the receive buffers the kernel may be
// filling and every connection stay as they are.
func (l *eventLoop) Trim() {
	l.pool.trim()
	l.io.trim()
}

// trim drops every free chunk: they become garbage for the collector,
// and the next burst allocates its chunks again.
func (p *chunkPool) trim() {
	*p = chunkPool{}
}
