package routes

import (
	"log/slog"
	"net"
	"sync"
	"syscall"
)

// hangupWatcher is one epoll set, read by one goroutine, that tells
// detached streams their client has gone: EPOLLRDHUP (the client closed
// its side), or an error or hangup of the socket. A stream never reads, so
// this is all that is asked of the socket until the stream ends.
type hangupWatcher struct {
	log  *slog.Logger
	epfd int    // -1 when epoll is unavailable
	wake [2]int // a pipe whose read end, token 0, stops the watcher

	mu     sync.Mutex
	next   uint64
	tokens map[uint64]func()
	closed bool
	done   chan struct{}
}

func newHangupWatcher(log *slog.Logger) *hangupWatcher {
	w := &hangupWatcher{log: log, epfd: -1, tokens: map[uint64]func(){}, done: make(chan struct{})}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err == nil {
		err = syscall.Pipe2(w.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK)
		if err == nil {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN}
			err = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, w.wake[0], &ev)
		}
		if err != nil {
			_ = syscall.Close(epfd)
		}
	}
	if err != nil {
		log.Warn("streams: epoll unavailable; one reader goroutine per stream instead", "err", err)
		close(w.done)
		return w
	}
	w.epfd = epfd
	w.next = 1 // 0 is the wake pipe
	go w.run()
	return w
}

func (w *hangupWatcher) run() {
	defer close(w.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			w.log.Error("streams: epoll_wait failed; hangups are noticed on the next write", "err", err)
			return
		}
		var gone []func()
		w.mu.Lock()
		for i := range events[:n] {
			token := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if token == 0 {
				w.mu.Unlock()
				return // Close
			}
			if f, ok := w.tokens[token]; ok {
				delete(w.tokens, token)
				gone = append(gone, f)
			}
		}
		w.mu.Unlock()
		for _, f := range gone {
			f()
		}
	}
}

// watch calls gone (once, from the watcher) when the client hangs up. The
// function it returns stops watching; call it before closing conn.
func (w *hangupWatcher) watch(conn net.Conn, gone func()) func() {
	sc, ok := conn.(syscall.Conn)
	if w.epfd < 0 || !ok {
		return readHangup(conn, gone)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return readHangup(conn, gone)
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return readHangup(conn, gone)
	}
	token := w.next
	w.next++
	w.tokens[token] = gone
	w.mu.Unlock()
	// One shot: once reported, the socket is left alone until unwatched.
	ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
	var ctlErr error
	err = raw.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || ctlErr != nil {
		w.forget(token)
		return readHangup(conn, gone)
	}
	return func() {
		w.forget(token)
		_ = raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
}

func (w *hangupWatcher) forget(token uint64) {
	w.mu.Lock()
	delete(w.tokens, token)
	w.mu.Unlock()
}

// Close stops the watcher; call it once no stream is left.
func (w *hangupWatcher) Close() {
	w.mu.Lock()
	if w.closed || w.epfd < 0 {
		w.closed = true
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	_, _ = syscall.Write(w.wake[1], []byte{1})
	<-w.done
	_ = syscall.Close(w.epfd)
	_ = syscall.Close(w.wake[0])
	_ = syscall.Close(w.wake[1])
}
