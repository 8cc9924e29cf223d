/* The page's behaviour. Everything about tiers, prices, limits and the text model comes from
 * GET /api/v1/system/ai-config/; nothing of the kind is written here, so an operator's change in
 * the admin shows on the next load without a deploy. */
(function () {
  "use strict";

  var app = document.getElementById("app");
  if (!app) return;
  var urls = app.dataset;
  // Long polls: each GET of a job answers as soon as the job is final, or after WAIT_S seconds.
  var WAIT_S = 25;
  var RETRY_MS = 1000;
  var FINAL = ["succeeded", "partial", "failed"];

  var state = {
    config: null,
    available: null,
    busyImages: false,
    busyText: false,
    busyArticle: false,
    articleTotal: null,
    articleLimit: null,
    total: null,
    limit: null,  // the estimate's binding limit: balance, member_cap or api_key_cap
    ledgerNext: null,
    usage: null,
    shortfall: 0,
  };

  var api = window.creditgate.api;
  var sentence = window.creditgate.sentence;

  function $(id) { return document.getElementById(id); }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  // The API's own sentence for 402, rebuilt from its numbers so it reads the same wherever the
  // shortfall is found (here before the click, or by the server after it).
  function shortfallMessage(required, available) {
    return "This needs " + plural(required, "credit") + "; you have " + available + ".";
  }

  // crypto.randomUUID exists only in secure contexts; a plain-http LAN address is not one.
  function newIdempotencyKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    var b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  // A tier no longer served is not in ai-config; its name is still worth showing.
  function tierLabel(tier) {
    var q = tierInfo(tier);
    return q ? q.label : tier.charAt(0).toUpperCase() + tier.slice(1);
  }

  // What an API error means to the person at the keyboard.
  function describeError(err, context) {
    var d = err.details || {};
    switch (err.code) {
      case "insufficient_credits":
        if (typeof d.required === "number" && typeof d.available === "number") {
          return shortfallMessage(d.required, d.available);
        }
        return sentence(err.message);
      case "tier_unavailable":
        return (context && context.tier ? tierLabel(context.tier) + " images aren't" : "That tier isn't")
          + " available right now. Pick another tier or try again later.";
      case "rate_limited":
        return "Too many requests at once. Wait a moment and try again.";
      case "invalid_request":
        return window.creditgate.describe(err);
      case "not_authenticated":
      case "authentication_failed":
      case "invalid_api_key":
      case "http_401":
      case "http_403":
        return "Your session has ended. Reload the page and log in again.";
      default:
        return sentence(err.message);
    }
  }

  function announce(text) { $("status").textContent = text; }

  function showAlert(text) {
    var el = $("alert");
    el.textContent = text;
    el.hidden = !text;
  }

  // --- configuration, balance, ledger --------------------------------------------------------

  function tierInfo(tier) {
    var list = (state.config && state.config.image_qualities) || [];
    for (var i = 0; i < list.length; i++) if (list[i].tier === tier) return list[i];
    return null;
  }

  function selectedTier() {
    var checked = document.querySelector('input[name="tier"]:checked');
    return checked ? checked.value : null;
  }

  function loadConfig() {
    // "no-cache": revalidate with the ETag every time, so a price change is seen on reload.
    return api(urls.configUrl, { cache: "no-cache" }).then(function (config) {
      state.config = config;
      renderTiers();
      renderCounts();
      renderTextModel();
      renderArticleChoices();
      repriceImages();
      // The chart colours tiers by their place in the config, which may have arrived after it.
      if (state.usage) renderUsage(state.usage);
    }, function (err) {
      $("tiers-loading").textContent = "The tiers could not be loaded: " + describeError(err);
      throw err;
    });
  }

  function renderTiers() {
    var fieldset = $("tiers");
    var keep = selectedTier();
    fieldset.querySelectorAll(".tier, #tiers-loading").forEach(function (el) { el.remove(); });
    var list = state.config.image_qualities || [];
    if (!list.length) {
      var p = document.createElement("p");
      p.id = "tiers-loading";
      p.className = "muted";
      p.textContent = "No image tier is available right now.";
      fieldset.appendChild(p);
      return;
    }
    if (!list.some(function (q) { return q.tier === keep; })) keep = list[0].tier;
    list.forEach(function (q) {
      var wrap = document.createElement("div");
      wrap.className = "tier";
      var input = document.createElement("input");
      input.type = "radio";
      input.name = "tier";
      input.id = "tier-" + q.tier;
      input.value = q.tier;
      input.checked = q.tier === keep;
      input.addEventListener("change", repriceImages);
      var label = document.createElement("label");
      label.htmlFor = input.id;
      var name = document.createElement("span");
      name.className = "tier-name";
      name.textContent = q.label;
      var price = document.createElement("span");
      price.className = "tier-price";
      price.textContent = plural(q.credits_per_image, "credit") + " per image";
      label.append(name, " ", price);
      wrap.append(input, label);
      fieldset.appendChild(wrap);
    });
  }

  function renderCounts() {
    var select = $("count");
    var max = state.config.max_images_per_request || 1;
    var keep = parseInt(select.value, 10) || 1;
    select.textContent = "";
    for (var n = 1; n <= max; n++) {
      var option = document.createElement("option");
      option.value = String(n);
      option.textContent = String(n);
      select.appendChild(option);
    }
    select.value = String(Math.min(keep, max));
    select.disabled = false;
  }

  function renderTextModel() {
    var el = $("text-model");
    var model = state.config.text_model;
    if (model) {
      el.textContent = "Text uses " + model + ", chosen by your administrator."
        + (state.config.tokens_per_credit
          ? " It costs 1 credit per " + state.config.tokens_per_credit + " tokens (prompt and reply)."
          : "");
    } else {
      el.textContent = "Text generation isn't available right now.";
    }
  }

  // Balances can be asked for in quick succession (a job accepted, then done): only the newest
  // request's answer is shown, whichever arrives last.
  var balanceSeq = 0;

  function loadBalance() {
    var seq = ++balanceSeq;
    return api(urls.balanceUrl).then(function (b) {
      if (seq !== balanceSeq) return;
      $("bal-available").textContent = String(b.available);
      $("bal-held").textContent = String(b.held);
      $("bal-balance").textContent = String(b.balance);
      state.available = b.available;
      // What the limits leave changed with the balance (a job, a purchase): ask the server again.
      if (state.config) { repriceImages(); repriceArticle(); } else update();
    });
  }

  var KIND_WORDS = {
    grant: "Credits added",
    hold: "Held for a job",
    capture: "Charged",
    release: "Released",
    expire: "Hold expired",
    refund: "Refunded",
    adjustment: "Adjusted",
    clawback: "Taken back (refund or dispute)",
    shortfall: "Paid what a refund took back",
  };
  // An entry of a job names the job ("Charged for 2 <tier> images") and links to its page.
  var JOB_KIND_WORDS = {
    hold: "Held for",
    capture: "Charged for",
    release: "Released for",
    expire: "Hold expired for",
  };
  var JOB_REFERENCE = /^job:([0-9a-f-]{36})$/i;

  // Jobs named by ledger entries, by id (null: it could not be read). What a job asked for never
  // changes, so each is read once per page load.
  var ledgerJobs = {};

  function jobIdOf(entry) {
    var match = JOB_REFERENCE.exec(entry.reference || "");
    return match ? match[1] : null;
  }

  // What the user asked for: "2 <tier> images", "Text", "Article with 3 <tier> images".
  function jobTitle(job) {
    var count = job.images_requested || job.count || 0;
    var images = plural(count, (job.tier ? tierLabel(job.tier) + " " : "") + "image");
    if (job.kind === "image") return images;
    if (job.kind === "article") return count ? "Article with " + images : "Article";
    return "Text";
  }

  function shorten(text, max) {
    text = String(text || "").replace(/\s+/g, " ").trim();
    return text.length > max ? text.slice(0, max - 1).trimEnd() + "…" : text;
  }

  function loadLedgerJobs(entries) {
    var wanted = [];
    entries.forEach(function (entry) {
      var id = jobIdOf(entry);
      if (id && !(id in ledgerJobs) && wanted.indexOf(id) === -1) wanted.push(id);
    });
    return Promise.all(wanted.map(function (id) {
      return api(urls.jobsUrl + id + "/").then(
        function (job) { ledgerJobs[id] = job; },
        function () { ledgerJobs[id] = null; }
      );
    }));
  }

  function ledgerWhat(entry) {
    var what = document.createElement("td");
    var id = jobIdOf(entry);
    var notes = [];
    if (id) {
      var job = ledgerJobs[id];
      var link = document.createElement("a");
      link.className = "job-link";
      link.href = urls.jobPageUrl + id + "/";
      link.textContent = job ? jobTitle(job) : "a job";
      what.append((JOB_KIND_WORDS[entry.kind] || KIND_WORDS[entry.kind] || entry.kind) + " ", link);
      if (job && job.prompt) notes.push("“" + shorten(job.prompt, 80) + "”");
      // An owner sees every member's jobs: name who ran the ones that are not theirs.
      if (entry.user && entry.user.username !== urls.username) notes.push("by " + entry.user.username);
    } else {
      what.textContent = KIND_WORDS[entry.kind] || entry.kind;
    }
    if (entry.reason) notes.push(entry.reason);
    notes.forEach(function (note) {
      var span = document.createElement("span");
      span.className = "reason";
      span.textContent = note;
      what.append(" ", span);
    });
    return what;
  }

  function ledgerRow(entry) {
    var tr = document.createElement("tr");
    var when = document.createElement("td");
    var time = document.createElement("time");
    time.dateTime = entry.created_at;
    time.textContent = window.creditgate.formatDateTime(entry.created_at);
    when.appendChild(time);
    var what = ledgerWhat(entry);
    var amount = document.createElement("td");
    amount.className = "num";
    if (entry.amount === 0 && entry.available_delta !== 0) {
      // A hold, release or expiry spends nothing: it moves credits between available and held.
      amount.classList.add("muted");
      amount.textContent = entry.available_delta < 0
        ? -entry.available_delta + " held" : entry.available_delta + " returned";
    } else {
      amount.textContent = entry.amount > 0 ? "+" + entry.amount : String(entry.amount);
    }
    var after = document.createElement("td");
    after.className = "num";
    after.textContent = String(entry.available_after);
    tr.append(when, what, amount, after);
    return tr;
  }

  function loadLedger(more) {
    var url = more ? state.ledgerNext : urls.ledgerUrl;
    if (!url) return Promise.resolve();
    return api(url).then(function (page) {
      return loadLedgerJobs(page.results || []).then(function () { return page; });
    }).then(function (page) {
      var body = $("ledger-rows");
      if (!more) body.textContent = "";
      (page.results || []).forEach(function (entry) { body.appendChild(ledgerRow(entry)); });
      state.ledgerNext = page.next;
      $("ledger-more").hidden = !page.next;
      $("ledger-empty").hidden = body.children.length > 0;
    });
  }

  // --- spending chart (GET /api/v1/credits/usage/, drawn with the vendored Chart.js) -----------

  // Image tiers in ai-config's order (cheapest first) go from light to dark blue; text is green.
  // By position, never by name: this script names no tier.
  var TIER_COLORS = ["#8ab4f0", "#0a5bd3", "#062f6e", "#5b3cc4", "#b35c00"];
  var TEXT_COLOR = "#1a7f37";
  var usageChart = null;

  function usageColor(key) {
    if (key === "text") return TEXT_COLOR;
    var list = (state.config && state.config.image_qualities) || [];
    for (var i = 0; i < list.length; i++) if (list[i].tier === key) return TIER_COLORS[i % TIER_COLORS.length];
    return "#8c959f";  // a tier no longer served
  }

  function dayLabel(isoDate) {
    // The API's days are UTC days: label them as such, whatever the browser's time zone.
    return new Date(isoDate + "T00:00:00Z").toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" });
  }

  function renderUsage(usage) {
    state.usage = usage;
    var keys = Object.keys(usage.labels || {});
    var totals = {};
    keys.forEach(function (key) {
      totals[key] = usage.rows.reduce(function (sum, row) { return sum + (row.by_tier[key] || 0); }, 0);
    });
    var summary = $("usage-summary");
    var box = $("usage-chart-box");
    var period = "in the last " + plural(usage.rows.length, "day");
    if (!usage.total) {
      summary.textContent = "No credits spent " + period + ".";
      box.hidden = true;
      return;
    }
    summary.textContent = plural(usage.total, "credit") + " spent " + period + ": "
      + keys.map(function (key) { return usage.labels[key] + " " + totals[key]; }).join(", ") + ".";
    if (typeof window.Chart !== "function") return;  // the sentence above still says it all
    box.hidden = false;
    var data = {
      labels: usage.rows.map(function (row) { return dayLabel(row.date); }),
      datasets: keys.map(function (key) {
        return {
          label: usage.labels[key],
          data: usage.rows.map(function (row) { return row.by_tier[key] || 0; }),
          backgroundColor: usageColor(key),
          stack: "credits",
        };
      }),
    };
    if (usageChart) {
      usageChart.data = data;
      usageChart.update();
      return;
    }
    // The page's own font and colours, not Chart.js's defaults.
    var style = getComputedStyle(document.body);
    window.Chart.defaults.font.family = style.fontFamily;
    window.Chart.defaults.color = getComputedStyle(document.documentElement).getPropertyValue("--muted").trim() || "#57606a";
    usageChart = new window.Chart($("usage-chart"), {
      type: "bar",
      data: data,
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 6 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (ctx) { return ctx.dataset.label + ": " + plural(ctx.parsed.y, "credit"); },
            },
          },
        },
      },
    });
  }

  function loadUsage() {
    return api(urls.usageUrl + "?group=day").then(renderUsage, function (err) {
      $("usage-summary").textContent = "Your spending could not be loaded: " + describeError(err);
    });
  }

  function refreshAccount() {
    return Promise.all([loadBalance(), loadLedger(false), loadUsage(), loadShortfall()]).catch(function (err) {
      showAlert("Your balance could not be refreshed: " + describeError(err));
    });
  }

  // --- buying credits: packs from the API, payment on Stripe's page, credits by Stripe's webhook --

  function loadPacks() {
    return api(urls.packsUrl).then(renderPacks, function (err) {
      $("packs-empty").textContent = "The credit packs could not be loaded: " + describeError(err);
      $("packs-empty").hidden = false;
    });
  }

  function span(className, text) {
    var el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  function renderPacks(packs) {
    var list = $("packs");
    list.textContent = "";
    $("packs-empty").hidden = packs.length > 0;
    packs.forEach(function (pack) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "primary";
      button.textContent = "Buy";
      button.setAttribute("aria-label", "Buy " + pack.name + ": " + plural(pack.credits, "credit") + " for "
        + pack.price);
      button.addEventListener("click", function () { buy(pack, button); });
      li.append(span("pack-name", pack.name), span("pack-credits", plural(pack.credits, "credit")),
        span("pack-price", pack.price), button);
      list.appendChild(li);
    });
  }

  function buy(pack, button) {
    button.disabled = true;
    showAlert("");
    api(urls.checkoutUrl, { method: "POST", body: { pack: pack.id } }).then(function (checkout) {
      window.location.assign(checkout.url);  // Stripe's page; it sends the user back with ?checkout=<id>
    }, function (err) {
      button.disabled = false;
      showAlert("The payment page could not be opened: " + describeError(err));
    });
  }

  // Back from Stripe's page. The credits come with Stripe's webhook, which may arrive a moment
  // after the user does: watch the checkout until it is paid (or closed), then refresh.
  function followCheckout() {
    var params = new URLSearchParams(window.location.search);
    var id = params.get("checkout");
    if (!id) return Promise.resolve();
    var cancelled = params.has("cancelled");
    window.history.replaceState(null, "", window.location.pathname + window.location.hash);
    var box = $("purchase");
    box.hidden = false;
    box.className = "purchase";
    box.textContent = cancelled ? "Checkout cancelled." : "Confirming your payment…";
    var tries = 0;
    function say(text, className) {
      box.textContent = text;
      box.className = "purchase " + className;
      announce(text);
    }
    function check() {
      return api(urls.checkoutUrl + encodeURIComponent(id) + "/").then(function (checkout) {
        if (checkout.status === "paid") {
          say("Payment received: " + plural(checkout.credits, "credit") + " added.", "ok");
          return refreshAccount();
        }
        if (checkout.status === "open" && !cancelled && ++tries < 60) return sleep(1000).then(check);
        if (checkout.status === "open" && cancelled) return say("Checkout cancelled; nothing was charged.", "muted");
        if (checkout.status === "open") {
          return say("Your payment is not confirmed yet; the credits appear as soon as it is. Reload in a minute.",
            "warn");
        }
        say("This checkout " + (checkout.status === "expired" ? "expired" : "failed") + "; nothing was charged.",
          "warn");
      }, function (err) {
        say("Your payment could not be checked: " + describeError(err), "warn");
      });
    }
    return check();
  }

  function loadShortfall() {
    return api(urls.shortfallUrl).then(function (answer) {
      state.shortfall = answer.shortfall;
      var el = $("shortfall");
      el.hidden = !answer.shortfall;
      el.textContent = answer.shortfall
        ? "A refund took back " + plural(answer.shortfall, "credit") + " that had already been spent. Buying credits "
          + "settles that first; new images and text wait until then."
        : "";
      update();
    });
  }

  function renderAlert(alert) {
    $("alert-threshold").value = alert.threshold === null ? "" : String(alert.threshold);
    $("alert-email").value = alert.email || "";
    // "armed": false means an email went (or the balance was already low when it was set): the
    // next one waits until a top-up brings the balance back to the threshold.
    $("alert-status").textContent = alert.threshold === null ? "Off."
      : (alert.armed
        ? "Armed: an email to " + alert.email + " when your available credits fall below " + alert.threshold + "."
        : "Waiting for a top-up: your available credits are below " + alert.threshold + " already; the next email to "
          + alert.email + " goes once they are back at " + alert.threshold + " or more and fall below it again.");
  }

  function saveAlert(threshold) {
    var body = { threshold: threshold };
    var email = $("alert-email").value.trim();
    if (threshold !== null && email) body.email = email;
    api(urls.alertUrl, { method: "PUT", body: body }).then(renderAlert, function (err) {
      $("alert-status").textContent = describeError(err);
    });
  }

  // --- the live total and the Generate button ------------------------------------------------

  // The total is priced by the server (POST /api/v1/credits/estimate/), the same code that
  // prices the hold: the page never multiplies credits itself. Only the newest answer counts.
  var estimateSeq = 0;

  function repriceImages() {
    var tier = selectedTier();
    var count = parseInt($("count").value, 10) || 0;
    var seq = ++estimateSeq;
    state.total = null;
    state.limit = null;
    update();
    if (!tierInfo(tier) || !count) return;
    api(urls.estimateUrl, { method: "POST", body: { kind: "image", tier: tier, count: count } }).then(
      function (estimate) {
        if (seq !== estimateSeq) return;
        state.total = estimate.credits;
        state.limit = estimate.limit || null;
        update();
      },
      function (err) {
        if (seq !== estimateSeq) return;
        showAlert("The price could not be worked out: " + describeError(err, { tier: tier }));
      }
    );
  }

  // What the estimate's binding limit says about this total: the one limit that decides, named.
  function coverageSentence(total, limit) {
    var cap = limit.kind === "member_cap" ? "your monthly cap" : "this API key's monthly cap";
    if (limit.kind === "balance") {
      return limit.covers ? "Your available credits cover this." : shortfallMessage(total, limit.remaining);
    }
    var left = plural(limit.remaining, "credit") + " of " + plural(limit.cap, "credit") + " left this month";
    if (limit.covers) {
      return "Within " + cap + ": " + left + ".";
    }
    return "This needs " + plural(total, "credit") + ", but " + cap + " leaves " + plural(limit.remaining, "credit")
      + " this month (" + limit.used + " of " + limit.cap + " used).";
  }

  function update() {
    var total = state.total;
    $("total").textContent = total === null ? "–" : plural(total, "credit");
    var coverage = $("coverage");
    var owed = state.shortfall > 0;
    var limit = state.limit;
    var covered = !owed && total !== null && limit !== null && limit.covers;
    coverage.dataset.limit = limit ? limit.kind : "";
    if (owed) {
      coverage.textContent = "New images wait until the " + plural(state.shortfall, "credit") + " owed are paid.";
      coverage.className = "coverage short";
    } else if (total === null || limit === null) {
      coverage.textContent = "";
    } else {
      coverage.textContent = coverageSentence(total, limit);
      coverage.className = "coverage " + (covered ? "ok" : "short");
    }
    var imagePrompt = $("image-prompt").value.trim();
    $("generate").disabled = state.busyImages || !covered || !imagePrompt;
    // Say why the button is grey, unless something on screen already does (the coverage line,
    // a job in progress, no tier at all).
    var imageHint = "";
    if (!state.busyImages && selectedTier()) {
      if (!imagePrompt) imageHint = "Describe the image to enable Generate.";
      else if (total === null) imageHint = "Working out the price…";
    }
    $("generate-hint").textContent = imageHint;
    var articlePrompt = $("article-prompt").value.trim();
    var articleLimit = state.articleLimit;
    var articleCovered = !owed && state.articleTotal !== null && articleLimit !== null && articleLimit.covers;
    $("article-total").textContent = state.articleTotal === null ? "–" : plural(state.articleTotal, "credit");
    var articleCoverage = $("article-coverage");
    articleCoverage.dataset.limit = articleLimit ? articleLimit.kind : "";
    if (owed) {
      articleCoverage.textContent = "New articles wait until the " + plural(state.shortfall, "credit") + " owed are paid.";
      articleCoverage.className = "coverage short";
    } else if (state.articleTotal !== null && articleLimit !== null) {
      articleCoverage.textContent = coverageSentence(state.articleTotal, articleLimit);
      articleCoverage.className = "coverage " + (articleCovered ? "ok" : "short");
    } else if (!articlePrompt) {
      articleCoverage.textContent = "";
    }
    var textModelOk = state.config && state.config.text_model;
    $("generate-article").disabled = state.busyArticle || !articlePrompt || !articleCovered || !textModelOk;
    var articleHint = "";
    if (!state.busyArticle && state.config) {
      if (!textModelOk) articleHint = "Articles aren't available right now (no text model).";
      else if (!articlePrompt) articleHint = "Say what the article is about to enable Create article.";
      else if (state.articleTotal === null) articleHint = "Working out the price…";
    }
    $("article-hint").textContent = articleHint;
    var textPrompt = $("text-prompt").value.trim();
    var textModel = state.config && state.config.text_model;
    $("generate-text").disabled = state.busyText || !textPrompt || !textModel;
    $("text-hint").textContent = !state.busyText && textModel && !textPrompt
      ? "Type what it should write to enable Write." : "";
  }

  // --- jobs --------------------------------------------------------------------------------

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  // Waits until the job reaches a final state with long polls (GET ?wait=N answers as soon as
  // the job is final): no polling interval, one request per WAIT_S seconds at most. A dropped
  // request is retried after a pause: the job runs on the server whether or not this page is watching.
  function waitJob(job, onChange) {
    var failures = 0;
    function step(current) {
      onChange(current);
      if (FINAL.indexOf(current.status) !== -1) return Promise.resolve(current);
      return api(urls.jobsUrl + current.id + "/?wait=" + WAIT_S).then(function (next) {
        failures = 0;
        return step(next);
      }, function (err) {
        failures += 1;
        if (failures > 20 || err.status === 404 || err.status === 401 || err.status === 403) throw err;
        return sleep(RETRY_MS).then(function () { return step(current); });
      });
    }
    return step(job);
  }

  // Follows a job to its end on the page: its summary line (announced to screen readers when its
  // status changes) and, for a generator that has one, its progress bar.
  function followJob(job, summary, describe, progress) {
    var lastStatus = null;
    return waitJob(job, function (current) {
      var text = describe(current);
      var final = FINAL.indexOf(current.status) !== -1;
      summary.textContent = text;
      if (progress) {
        if (final) progress.value = 1;
        else progress.removeAttribute("value");
        progress.hidden = final;
      }
      if (current.status !== lastStatus) announce(text);
      lastStatus = current.status;
    });
  }

  function failedSentence(job) {
    var reason = job.error && job.error.message ? sentence(job.error.message) : "The job failed.";
    var charged = job.credits_charged
      ? "Charged " + plural(job.credits_charged, "credit") + "."
      : "No credits were charged.";
    // The server's message may already say what was charged; say it once.
    if (reason.indexOf(charged) !== -1) return "Failed: " + reason;
    return "Failed: " + reason + " " + charged;
  }

  function imageSummary(job) {
    var requested = job.images_requested || job.count || 0;
    var delivered = job.images_delivered || 0;
    switch (job.status) {
      case "queued": return "Waiting to start " + plural(requested, "image") + "…";
      case "running": return "Generating " + plural(requested, "image") + "…";
      case "succeeded":
        return "Delivered " + plural(delivered, "image") + "; charged " + plural(job.credits_charged, "credit") + ".";
      case "partial":
        return "Delivered " + delivered + " of " + plural(requested, "image") + "; charged "
          + plural(job.credits_charged, "credit") + ".";
      case "failed": return failedSentence(job);
      default: return job.status;
    }
  }

  function renderImages(job, gridId) {
    var grid = $(gridId || "images");
    grid.textContent = "";
    var images = job.images || [];
    images.forEach(function (image, i) {
      var li = document.createElement("li");
      var link = document.createElement("a");
      link.href = image.url;
      link.target = "_blank";
      link.rel = "noopener";
      var img = document.createElement("img");
      img.src = image.url;
      img.alt = "Image " + (i + 1) + " of " + images.length + ": " + job.prompt;
      if (image.width) img.width = image.width;
      if (image.height) img.height = image.height;
      img.decoding = "async";
      link.appendChild(img);
      li.appendChild(link);
      var caption = imageCaption(job, image);
      if (caption) {
        var made = document.createElement("small");
        made.className = "image-model";
        made.textContent = caption;
        made.title = "The model that made this image";
        li.appendChild(made);
      }
      grid.appendChild(li);
    });
  }

  // Who made an image, for people: the model's display name, else the tier; never a provider's id.
  function imageCaption(job, image) {
    var shown = image.model_display_name;
    if (shown && shown !== image.model) return shown;
    return job.tier ? tierLabel(job.tier) : "";
  }

  function onImageSubmit(event) {
    event.preventDefault();
    if ($("generate").disabled) return;
    var tier = selectedTier();
    var count = parseInt($("count").value, 10);
    var prompt = $("image-prompt").value.trim();
    state.busyImages = true;
    update();
    showAlert("");
    var panel = $("image-job");
    var summary = $("image-job-summary");
    var progress = $("image-progress");
    // The last job's result must not pass for this one's while the request is on its way.
    summary.textContent = "Sending…";
    summary.className = "";
    $("images").textContent = "";
    api(urls.imagesUrl, {
      method: "POST",
      body: { prompt: prompt, tier: tier, count: count },
      headers: { "Idempotency-Key": newIdempotencyKey() },
    }).then(function (job) {
      panel.hidden = false;
      $("images").textContent = "";
      loadBalance().catch(function () {});
      return followJob(job, summary, imageSummary, progress).then(function (done) {
        renderImages(done);
        summary.className = done.status === "succeeded" ? "ok" : (done.status === "partial" ? "warn" : "short");
      });
    }).catch(function (err) {
      var message = describeError(err, { tier: tier });
      showAlert(message);
      announce("");
      if (err.code === "tier_unavailable") loadConfig().catch(function () {});
    }).then(function () {
      state.busyImages = false;
      return refreshAccount();
    }).then(update);
  }

  // --- text, streamed: POST /v1/chat/completions (OpenAI's chat API) as Server-Sent Events --------

  // Server-Sent Events as they arrive: a line split between two network chunks is put back together
  // and an event ends at a blank line. Each event goes to onEvent as {data, comments}: its data
  // lines (null for none) and its comment lines (": ..."), where a stream that failed says what it
  // cost. An event left unfinished when the stream ends is dropped, as EventSource does.
  function sseReader(onEvent) {
    var buffer = "";
    var data = [];
    var comments = [];
    function line(text) {
      if (text === "") {
        if (data.length || comments.length) onEvent({ data: data.length ? data.join("\n") : null, comments: comments });
        data = [];
        comments = [];
      } else if (text.charAt(0) === ":") {
        comments.push(text.slice(1).trim());
      } else {
        var colon = text.indexOf(":");
        var value = colon === -1 ? "" : text.slice(colon + 1);
        if ((colon === -1 ? text : text.slice(0, colon)) === "data") data.push(value.charAt(0) === " " ? value.slice(1) : value);
      }
    }
    return function push(text) {
      buffer += text;
      var eol = /\r\n|\r|\n/g;
      var start = 0;
      var match;
      while ((match = eol.exec(buffer)) !== null) {
        // A "\r" last in the buffer may be the first half of a "\r\n" still on its way.
        if (match[0] === "\r" && eol.lastIndex === buffer.length) break;
        line(buffer.slice(start, match.index));
        start = eol.lastIndex;
      }
      buffer = buffer.slice(start);
    };
  }

  // One streamed chat: `run.jobId` is set as soon as the server names the job (a header, then the
  // first chunk), `on.start()` once text is on its way, `on.piece(text)` for each piece as it comes.
  // Resolves with what the stream said of its end: {done ([DONE] came), cost (the `creditgate`
  // object), usage, error (an error event)}. A refusal before any text (402, 429, 503...) is an
  // ApiError with OpenAI's {error: {message, code}}; `run.controller.abort()` rejects with an AbortError.
  function streamText(body, run, on) {
    var result = { done: false, cost: null, usage: null, error: null };
    var ApiError = window.creditgate.ApiError;
    return fetch(urls.chatUrl, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      // The stream, or a refusal as JSON (DRF answers 406 to an Accept it cannot render).
      headers: { Accept: "text/event-stream, application/json", "Content-Type": "application/json",
        "X-CSRFToken": window.creditgate.csrfToken() },
      body: JSON.stringify(body),
      signal: run.controller.signal,
    }).catch(function (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, null, "The server could not be reached. Check your connection and try again.");
    }).then(function (response) {
      var type = response.headers.get("Content-Type") || "";
      if (!response.ok || type.indexOf("text/event-stream") !== 0 || !response.body) {
        return response.json().catch(function () { return null; }).then(function (answer) {
          throw new ApiError(response.status, answer);
        });
      }
      run.jobId = response.headers.get("X-Creditgate-Job-Id");
      on.start();
      var push = sseReader(function (event) {
        event.comments.forEach(function (comment) {
          var said = /^creditgate\s+(\{.*\})$/.exec(comment);
          if (!said) return;
          try { result.cost = JSON.parse(said[1]); } catch (e) { /* a comment is only a comment */ }
        });
        if (event.data === null) return;
        if (event.data === "[DONE]") { result.done = true; return; }
        var chunk;
        try { chunk = JSON.parse(event.data); } catch (e) { return; }
        if (chunk.error) { result.error = chunk.error; return; }
        if (chunk.creditgate) {
          result.cost = Object.assign({}, result.cost, chunk.creditgate);
          run.jobId = run.jobId || chunk.creditgate.job_id;
        }
        if (chunk.usage) result.usage = chunk.usage;
        var choice = chunk.choices && chunk.choices[0];
        if (choice && choice.delta && choice.delta.content) on.piece(choice.delta.content);
      });
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      function read() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            push(decoder.decode());
            return result;
          }
          push(decoder.decode(chunk.value, { stream: true }));
          return read();
        });
      }
      return read();
    });
  }

  // A text job's end in words; what it delivered and cost as the job API gives them (or the
  // stream's last chunk, in the same shape).
  function textSummary(job) {
    var charged = plural(job.credits_charged || 0, "credit");
    var tokens = job.tokens ? plural(job.tokens.total, "token") : "";
    var stopped = job.error && job.error.code === "stream_stopped";
    switch (job.status) {
      case "queued": return "Waiting to start…";
      case "running": return "Writing…";
      case "succeeded": return "Done: " + (tokens ? tokens + "; " : "") + "charged " + charged + ".";
      case "partial": {
        var cost = charged + (tokens ? " for " + tokens : "") + ".";
        if (stopped) return "Stopped: charged " + cost;
        var reason = job.error && job.error.message ? sentence(job.error.message) + " " : "";
        return "Cut short: " + reason + "Charged " + cost;
      }
      case "failed":
        if (stopped) {
          return "Stopped before any text was written; "
            + (job.credits_charged ? "charged " + charged + "." : "no credits were charged.");
        }
        return failedSentence(job);
      default: return job.status;
    }
  }

  // The text streaming now: {controller (its fetch's AbortController), jobId}.
  var textRun = null;

  function onTextSubmit(event) {
    event.preventDefault();
    if ($("generate-text").disabled) return;
    var prompt = $("text-prompt").value.trim();
    var run = textRun = { controller: new AbortController(), jobId: null };
    var summary = $("text-job-summary");
    var output = $("text-output");
    var written = null;  // the text node each piece is added to, as it comes
    state.busyText = true;
    update();
    showAlert("");
    summary.textContent = "Sending…";
    summary.className = "";
    output.textContent = "";
    var body = { model: "default", messages: [{ role: "user", content: prompt }], stream: true,
      stream_options: { include_usage: true } };
    streamText(body, run, {
      start: function () {
        $("text-job").hidden = false;
        summary.textContent = "Writing…";
        // Screen readers hear the start and the end; the text itself is read when they get to it.
        output.setAttribute("aria-busy", "true");
        $("stop-text").hidden = false;
        announce("Writing…");
        loadBalance().catch(function () {});  // the hold
      },
      piece: function (text) {
        if (!written) {
          written = document.createTextNode("");
          output.appendChild(written);
        }
        written.appendData(text);
      },
    }).then(function (end) {
      var cost = end.cost || {};
      if (end.done && !end.error && cost.status === "succeeded" && typeof cost.credits_charged === "number") {
        return { status: cost.status, credits_charged: cost.credits_charged,
          tokens: end.usage ? { total: end.usage.total_tokens } : null, error: null };
      }
      // Cut short (an error event, or the stream ended early): the job says what it kept and cost.
      if (!run.jobId) throw new window.creditgate.ApiError(502, { error: end.error });
      return settledJob(run.jobId);
    }, function (err) {
      // Stopped: the server cancels the provider and charges what it produced, then settles the job.
      if (err && err.name === "AbortError") {
        if (!run.jobId) return { status: "failed", credits_charged: 0, error: { code: "stream_stopped" } };
        return settledJob(run.jobId);
      }
      throw err;
    }).then(function (job) {
      if (job.text) output.textContent = job.text;  // all that was charged, past the last piece shown
      var text = textSummary(job);
      summary.textContent = text;
      summary.className = job.status === "succeeded" ? "ok" : (job.status === "partial" ? "warn" : "short");
      announce(text);
    }).catch(function (err) {
      $("text-job").hidden = !output.textContent;
      showAlert(describeError(err));
      announce("");
    }).then(function () {
      var stop = $("stop-text");
      if (document.activeElement === stop) output.focus();
      stop.hidden = true;
      output.removeAttribute("aria-busy");
      if (textRun === run) textRun = null;
      state.busyText = false;
      return refreshAccount();
    }).then(update);
  }

  // A job followed to its final state (long polls), for a stream that did not say its cost.
  function settledJob(jobId) {
    return waitJob({ id: jobId, status: "running" }, function () {});
  }

  function onTextStop() {
    if (!textRun || textRun.controller.signal.aborted) return;
    $("text-job-summary").textContent = "Stopping…";
    var stop = $("stop-text");
    if (document.activeElement === stop) $("text-output").focus();  // not lost with the button
    stop.hidden = true;
    textRun.controller.abort();
  }

  // --- the article: a text plus images of a tier, one job (POST /api/v1/articles/generations/) ---

  function renderArticleChoices() {
    var tierSelect = $("article-tier");
    var keepTier = tierSelect.value;
    tierSelect.textContent = "";
    (state.config.image_qualities || []).forEach(function (q) {
      var option = document.createElement("option");
      option.value = q.tier;
      option.textContent = q.label + " (" + plural(q.credits_per_image, "credit") + " per image)";
      tierSelect.appendChild(option);
    });
    if (keepTier && tierInfo(keepTier)) tierSelect.value = keepTier;
    tierSelect.disabled = !tierSelect.options.length;
    var countSelect = $("article-images");
    var max = state.config.max_images || 0;  // the settings' images per article
    var keep = countSelect.value === "" ? max : parseInt(countSelect.value, 10);
    countSelect.textContent = "";
    for (var n = 0; n <= max; n++) {
      var option = document.createElement("option");
      option.value = String(n);
      option.textContent = n === 0 ? "None" : String(n);
      countSelect.appendChild(option);
    }
    countSelect.value = String(Math.min(keep, max));
    // With no tier to serve them, an article can still be text only.
    countSelect.disabled = !tierSelect.options.length;
    if (!tierSelect.options.length) countSelect.value = "0";
    repriceArticle();
  }

  // The most an article can cost (its hold: the prompt, max_tokens and the images), priced by the
  // server like every total on the page. Only the newest answer counts.
  var articleSeq = 0;
  var articleTimer = null;

  function articleBody() {
    var body = { prompt: $("article-prompt").value.trim(), image_count: parseInt($("article-images").value, 10) || 0 };
    // The API asks for a tier even with no images; with none served, the server says why.
    var tier = $("article-tier").value || ((state.config.image_qualities || [])[0] || {}).tier;
    if (tier) body.tier = tier;
    return body;
  }

  function repriceArticle() {
    var seq = ++articleSeq;
    state.articleTotal = null;
    state.articleLimit = null;
    update();
    var body = articleBody();
    if (!body.prompt || !(state.config && state.config.text_model)) return;
    api(urls.estimateUrl, { method: "POST", body: Object.assign({ kind: "article" }, body) }).then(
      function (estimate) {
        if (seq !== articleSeq) return;
        state.articleTotal = estimate.credits_max;
        state.articleLimit = estimate.limit || null;
        update();
      },
      function (err) {
        if (seq !== articleSeq) return;
        $("article-coverage").textContent = "The price could not be worked out: " + describeError(err, { tier: body.tier });
        $("article-coverage").className = "coverage short";
      }
    );
  }

  // The prompt counts toward the price (its tokens): reprice once typing pauses.
  function repriceArticleSoon() {
    clearTimeout(articleTimer);
    articleTimer = setTimeout(repriceArticle, 300);
    update();
  }

  function articleSummary(job) {
    var requested = job.images_requested || 0;
    var delivered = job.images_delivered || 0;
    var images = requested ? " and " + plural(requested, "image") : "";
    switch (job.status) {
      case "queued": return "Waiting to start…";
      case "running": return "Writing the article" + images + "…";
      case "succeeded":
      case "partial": {
        var got = requested ? (delivered === requested ? plural(delivered, "image")
          : delivered + " of " + plural(requested, "image")) + "; " : "";
        var tokens = job.tokens ? plural(job.tokens.total, "token") + "; " : "";
        return (job.status === "partial" ? "Partly done: " : "Done: ") + tokens + got + "charged "
          + plural(job.credits_charged, "credit") + ".";
      }
      case "failed": return failedSentence(job);
      default: return job.status;
    }
  }

  function onArticleSubmit(event) {
    event.preventDefault();
    if ($("generate-article").disabled) return;
    var body = articleBody();
    state.busyArticle = true;
    update();
    showAlert("");
    var summary = $("article-job-summary");
    var progress = $("article-progress");
    summary.textContent = "Sending…";
    summary.className = "";
    $("article-output").textContent = "";
    $("article-images-out").textContent = "";
    api(urls.articlesUrl, {
      method: "POST",
      body: body,
      headers: { "Idempotency-Key": newIdempotencyKey() },
    }).then(function (job) {
      $("article-job").hidden = false;
      loadBalance().catch(function () {});
      return followJob(job, summary, articleSummary, progress).then(function (done) {
        $("article-output").textContent = done.text || "";
        renderImages(done, "article-images-out");
        summary.className = done.status === "succeeded" ? "ok" : (done.status === "partial" ? "warn" : "short");
      });
    }).catch(function (err) {
      showAlert(describeError(err, { tier: body.tier }));
      announce("");
    }).then(function () {
      state.busyArticle = false;
      return refreshAccount();
    }).then(function () { repriceArticle(); });
  }

  // --- wiring ------------------------------------------------------------------------------

  $("count").addEventListener("change", repriceImages);
  $("image-prompt").addEventListener("input", update);
  $("text-prompt").addEventListener("input", update);
  $("image-form").addEventListener("submit", onImageSubmit);
  $("text-form").addEventListener("submit", onTextSubmit);
  $("stop-text").addEventListener("click", onTextStop);
  $("article-form").addEventListener("submit", onArticleSubmit);
  $("article-prompt").addEventListener("input", repriceArticleSoon);
  $("article-tier").addEventListener("change", repriceArticle);
  $("article-images").addEventListener("change", repriceArticle);
  $("alert-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var n = Number($("alert-threshold").value);
    if (!Number.isInteger(n) || n < 1) {
      $("alert-status").textContent = "Enter a whole number of credits, 1 or more.";
      return;
    }
    saveAlert(n);
  });
  $("alert-off").addEventListener("click", function () { saveAlert(null); });
  $("ledger-more").addEventListener("click", function () {
    loadLedger(true).catch(function (err) { showAlert("Older entries could not be loaded: " + describeError(err)); });
  });
  // Another tab or an operator may have changed the balance or a price while this one was hidden.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState !== "visible") return;
    if (!state.busyImages && !state.busyText && !state.busyArticle) refreshAccount();
    loadConfig().catch(function () {});
  });

  var loaded = Promise.all([loadConfig(), refreshAccount(), loadPacks(),
    api(urls.alertUrl).then(renderAlert, function () {})]);
  loaded.then(function () {
    app.dataset.ready = "true";
  }, function () {
    app.dataset.ready = "true";
  });
  loaded.catch(function () {}).then(followCheckout);
})();
