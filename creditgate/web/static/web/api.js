/* The page's one client of the public API, shared by app.js (the home page) and team.js (the team
 * page): same-origin fetch with the CSRF token on every write, JSON in and out, and every failure
 * as an ApiError carrying the contract's error {code, message, details}. (A streamed text reads
 * its own response, in app.js, with the same token and the same ApiError.) */
(function () {
  "use strict";

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function ApiError(status, body, fallback) {
    var error = (body && body.error) || {};
    this.status = status;
    this.code = error.code || (status === 0 ? "network" : "http_" + status);
    this.message = error.message || fallback || "Something went wrong (HTTP " + status + ").";
    this.details = error.details || {};
  }

  function api(url, options) {
    options = options || {};
    var init = {
      method: options.method || "GET",
      credentials: "same-origin",
      cache: options.cache || "no-store",
      headers: Object.assign({ Accept: "application/json" }, options.headers || {}),
    };
    if (init.method !== "GET") init.headers["X-CSRFToken"] = csrfToken();
    if (options.body !== undefined) {
      init.body = JSON.stringify(options.body);
      init.headers["Content-Type"] = "application/json";
    }
    return fetch(url, init).then(
      function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (!response.ok) throw new ApiError(response.status, body);
          return body;
        });
      },
      function () {
        throw new ApiError(0, null, "The server could not be reached. Check your connection and try again.");
      }
    );
  }

  // A message as a sentence: the API's messages end with a full stop, a network error may not.
  function sentence(text) {
    text = String(text || "").trim();
    return text && !/[.!?]$/.test(text) ? text + "." : text;
  }

  function fieldLabel(field) {
    var words = String(field).replace(/_/g, " ");
    return /^url$/i.test(words) ? "URL" : words.charAt(0).toUpperCase() + words.slice(1);
  }

  function same(a, b) {
    var norm = function (t) { return sentence(t).toLowerCase(); };
    return norm(b).indexOf(norm(a).replace(/\.$/, "")) !== -1;
  }

  // An error as the person reads it, each fact once. The contract's message is a sentence and
  // details may repeat it per field ("url": the same words), so a detail already said is left out;
  // a 400's generic "Invalid input: email." gives way to the fields' own messages
  // ("Email: Enter a valid email address.").
  function describe(err) {
    var details = err.details || {};
    var fields = Object.keys(details).filter(function (f) {
      return Array.isArray(details[f]) && details[f].every(function (m) { return typeof m === "string"; });
    });
    var message = sentence(err.message);
    if (err.code === "invalid_request" && fields.length && /^Invalid input\b/.test(message)) {
      return fields.map(function (f) { return fieldLabel(f) + ": " + sentence(details[f].join(" ")); }).join(" ");
    }
    if (err.code !== "invalid_request") return message;
    var said = [message];
    fields.forEach(function (f) {
      details[f].forEach(function (m) {
        if (!said.some(function (s) { return same(m, s); })) said.push(sentence(m));
      });
    });
    return said.join(" ");
  }

  // Every date and time on the pages, in one format and the reader's own locale and time zone
  // ("7 Dec 2026, 14:05" or "Dec 7, 2026, 2:05 PM"): the history, the team page, a job's page.
  function formatDateTime(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  // Times the server wrote (a job's page): <time class="local-time" datetime="…">, shown the same way.
  function localizeTimes(root) {
    (root || document).querySelectorAll("time.local-time[datetime]").forEach(function (el) {
      el.textContent = formatDateTime(el.getAttribute("datetime"));
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { localizeTimes(); });
  } else {
    localizeTimes();
  }

  window.creditgate = { api: api, sentence: sentence, describe: describe, formatDateTime: formatDateTime,
    csrfToken: csrfToken, ApiError: ApiError };
})();
