package load

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Client is the load generator's HTTP/1.1 client: persistent connections to
// one host, one request at a time on each, written and read by the calling
// goroutine. net/http's Transport runs a read and a write goroutine per
// connection and hands every request between three goroutines; on the same
// two cores as the pipeline that cost the generator 70 us per request, CPU
// taken from what it measures. Safe for concurrent use.
type Client struct {
	host    string
	idle    chan *clientConn
	timeout time.Duration
}

type clientConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

// NewClient talks to the host of base ("http://127.0.0.1:8080"), keeping up
// to conns idle connections.
func NewClient(base string, conns int) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("load client: %q is not an http://host:port URL", base)
	}
	return &Client{host: u.Host, idle: make(chan *clientConn, conns), timeout: 30 * time.Second}, nil
}

// Do sends one request and returns the response's status code once its
// body has been read. header may be nil; body may be empty.
//
// A request that fails on a kept-alive connection (the server may have
// closed it while idle) is sent once more on a new one, as net/http does:
// the generator's GETs are idempotent and its webhooks carry a webhook-id
// the receiver deduplicates.
func (cl *Client) Do(method, path string, header http.Header, body []byte) (int, error) {
	c, reused, err := cl.get()
	if err != nil {
		return 0, err
	}
	code, keep, err := c.roundTrip(cl, method, path, header, body)
	if err != nil && reused {
		c.c.Close()
		if c, err = cl.dial(); err != nil {
			return 0, err
		}
		code, keep, err = c.roundTrip(cl, method, path, header, body)
	}
	if err != nil || !keep {
		c.c.Close()
		return code, err
	}
	select {
	case cl.idle <- c:
	default:
		c.c.Close()
	}
	return code, nil
}

// Close closes the idle connections.
func (cl *Client) Close() {
	for {
		select {
		case c := <-cl.idle:
			c.c.Close()
		default:
			return
		}
	}
}

func (cl *Client) get() (c *clientConn, reused bool, err error) {
	select {
	case c := <-cl.idle:
		return c, true, nil
	default:
	}
	c, err = cl.dial()
	return c, false, err
}

func (cl *Client) dial() (*clientConn, error) {
	nc, err := net.DialTimeout("tcp", cl.host, cl.timeout)
	if err != nil {
		return nil, err
	}
	return &clientConn{c: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 8<<10)}, nil
}

func (c *clientConn) roundTrip(cl *Client, method, path string, header http.Header, body []byte) (code int, keep bool, err error) {
	if err := c.c.SetDeadline(time.Now().Add(cl.timeout)); err != nil {
		return 0, false, err
	}
	w := c.bw
	w.WriteString(method + " " + path + " HTTP/1.1\r\nHost: " + cl.host + "\r\n")
	if len(body) > 0 || method == http.MethodPost {
		w.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	for k, vs := range header {
		for _, v := range vs {
			w.WriteString(k + ": " + v + "\r\n")
		}
	}
	w.WriteString("\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return 0, false, err
	}
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, false, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, err == nil && !res.Close, err
}
