package testenv

import (
	"net"
	"sync"
	"testing"
)

// Blackhole returns the address of a loopback listener that accepts
// connections and never answers, as a hung broker does; its connections
// are held open and closed in t.Cleanup.
func Blackhole(t testing.TB) string {
	t.Helper()
	return Serve(t, Loopback(t), nil)
}

// Loopback returns a listener on a free 127.0.0.1 port.
func Loopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// Serve accepts ln's connections and hands each to handle in a goroutine
// of its own (handle nil: the connection is held open and never answered)
// until t ends; t.Cleanup then closes ln and every connection. It returns
// ln's address.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) string {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if handle != nil {
				go handle(c)
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
