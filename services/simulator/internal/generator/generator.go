// Package generator makes plausible review changes for the simulator's
// trickle: new reviews, edits and deletes across the registered providers and a
// small set of movies. The sequence depends only on the seed, so a run can be
// reproduced. A Generator is not safe for concurrent use.
package generator

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/catalog"
)

// Movie is one of the movies the generator reviews.
type Movie struct{ ID, Title string }

// Movies are the 20 movies generated changes are about.
var Movies = []Movie{
	{"tt0111161", "The Shawshank Redemption"}, {"tt0068646", "The Godfather"},
	{"tt0071562", "The Godfather Part II"}, {"tt0468569", "The Dark Knight"},
	{"tt0050083", "12 Angry Men"}, {"tt0108052", "Schindler's List"},
	{"tt0167260", "The Lord of the Rings: The Return of the King"}, {"tt0110912", "Pulp Fiction"},
	{"tt0120737", "The Lord of the Rings: The Fellowship of the Ring"}, {"tt0060196", "Il buono, il brutto, il cattivo"},
	{"tt0109830", "Forrest Gump"}, {"tt0137523", "Fight Club"},
	{"tt1375666", "Inception"}, {"tt0080684", "The Empire Strikes Back"},
	{"tt0133093", "The Matrix"}, {"tt0099685", "Goodfellas"},
	{"tt0073486", "One Flew Over the Cuckoo's Nest"}, {"tt0114369", "Se7en"},
	{"tt0038650", "It's a Wonderful Life"}, {"tt0047478", "Shichinin no samurai"},
}

// Providers are the providers changes go to: every registered provider
// (pkg/provider), in registration order, so a seed replays the same steps.
var Providers = registeredNames()

func registeredNames() []string {
	var out []string
	for _, r := range provider.Registered() {
		out = append(out, r.Name())
	}
	return out
}

// style is how one provider's generated reviews look: its review ids and
// its review page URLs. A provider's simulator shape includes its style.
type style struct {
	newID func(rng *rand.Rand) string
	url   string // the review's URL, before its id
}

// styles are the providers' styles, by name. A test fails while a
// registered provider has none.
var styles = map[string]style{
	"generic":   {func(rng *rand.Rand) string { return fmt.Sprintf("gen-%012x", rng.Uint64()>>16) }, "https://generic.example/reviews/"},
	"cinescore": {func(rng *rand.Rand) string { return fmt.Sprintf("cs-%09d", rng.IntN(1_000_000_000)) }, "https://cinescore.example/critiques/"},
	"reelpulse": {func(rng *rand.Rand) string { return fmt.Sprintf("rp_%08x", rng.Uint32()) }, "https://reelpulse.example/p/"},
}

// Styled reports whether the generator knows how the provider's reviews look.
func Styled(name string) bool { _, ok := styles[name]; return ok }

// Step is one generated change.
type Step struct {
	Provider string
	Change   catalog.Change
	// Webhook says the change is also pushed as a webhook (else poll-only).
	Webhook bool
}

type live struct {
	id    string
	movie Movie
}

// Generator makes Steps.
type Generator struct {
	rng  *rand.Rand
	live map[string][]live
}

// New returns a generator seeded with seed.
func New(seed uint64) *Generator {
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), live: map[string][]live{}}
}

// Next makes the next change: about 60% new reviews, 30% edits, 10%
// deletes (new reviews while a provider has fewer than 5 live ones), half
// of them with a webhook. Versions are left to the catalogue (current + 1).
func (g *Generator) Next() Step {
	p := Providers[g.rng.IntN(len(Providers))]
	st := Step{Provider: p, Webhook: g.rng.IntN(2) == 0}
	lv := g.live[p]
	roll := g.rng.IntN(10)
	switch {
	case len(lv) < 5 || roll < 6:
		m := Movies[g.rng.IntN(len(Movies))]
		id := g.newID(p)
		g.live[p] = append(lv, live{id, m})
		st.Change = g.upsert(p, id, m)
	case roll < 9:
		l := lv[g.rng.IntN(len(lv))]
		st.Change = g.upsert(p, l.id, l.movie)
	default:
		i := g.rng.IntN(len(lv))
		l := lv[i]
		g.live[p] = append(lv[:i], lv[i+1:]...)
		st.Change = catalog.Change{Op: catalog.OpDelete, Data: provider.GenericData{ReviewID: l.id}}
	}
	return st
}

func (g *Generator) newID(p string) string { return styles[p].newID(g.rng) }

var (
	authors   = []string{"Ann Lee", "Bruno Díaz", "Chloé Martin", "Dmitri Volkov", "Emeka Obi", "Fatima Zahra", "Gustav Berg", "Hana Sato", "Ines Costa", "Jamal Reed"}
	openings  = []string{"A triumph", "Overrated", "Still holds up", "Uneven but bold", "A slow burn", "Pure cinema", "Not for me", "A modern classic"}
	sentences = []string{
		"The performances carry every scene.", "The pacing sags in the second act.",
		"Its score lingers long after the credits.", "Few films age this gracefully.",
		"The script trusts its audience.", "Visually stunning, emotionally distant.",
		"I laughed, then I cried, then I rewatched it.", "Le montage est d'une précision rare.",
		"Die Kamera bleibt immer nah an den Figuren.", "画面の構図が美しい。",
		"A few scenes overstay their welcome.", "An ending that earns every minute 🎬.",
	}
	languages = []string{"en", "en-US", "en-GB", "fr", "de", "ja", "es", "pt-BR"}
	scales    = []float64{5, 10, 100}
)

func (g *Generator) upsert(p, id string, m Movie) catalog.Change {
	d := provider.GenericData{
		ReviewID: id,
		Movie:    &provider.GenericMovie{ImdbID: m.ID, Title: m.Title},
		Author:   authors[g.rng.IntN(len(authors))],
		Title:    openings[g.rng.IntN(len(openings))],
		Language: languages[g.rng.IntN(len(languages))],
	}
	var body []string
	for n := 1 + g.rng.IntN(4); n > 0; n-- {
		body = append(body, sentences[g.rng.IntN(len(sentences))])
	}
	d.Body = strings.Join(body, " ")
	if g.rng.IntN(10) > 0 { // one review in ten has no rating
		s := scales[g.rng.IntN(len(scales))]
		d.Rating = &provider.GenericRating{Value: float64(g.rng.IntN(int(s)*2+1)) / 2, Scale: s}
	}
	d.URL = styles[p].url + id
	return catalog.Change{Op: catalog.OpUpsert, Data: d, LetterGrade: g.rng.IntN(2) == 0}
}
