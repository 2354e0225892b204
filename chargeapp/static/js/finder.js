/* The station finder: district picker, "nearest to me", and the map of stations.
   Works without this file (the district form and the list are plain HTML). */
(function () {
  "use strict";

  var district = document.getElementById("district");
  if (district && district.hasAttribute("data-autosubmit")) {
    district.addEventListener("change", function () { district.form.submit(); });
  }

  // Geolocation needs a secure context (HTTPS or localhost): offer it only where it can work.
  var locate = document.getElementById("locate");
  var status = document.getElementById("locate-status");
  if (locate && "geolocation" in navigator && window.isSecureContext) {
    locate.hidden = false;
    locate.addEventListener("click", function () {
      status.textContent = locate.getAttribute("data-wait");
      navigator.geolocation.getCurrentPosition(function (pos) {
        var params = new URLSearchParams();
        params.set("lat", pos.coords.latitude.toFixed(5));
        params.set("lon", pos.coords.longitude.toFixed(5));
        window.location.search = params.toString();
      }, function () {
        status.textContent = locate.getAttribute("data-denied");
      }, { enableHighAccuracy: false, timeout: 10000, maximumAge: 300000 });
    });
  }

  drawMap();

  function drawMap() {
    var el = document.getElementById("map");
    if (!el || typeof window.L === "undefined") { return; }
    var cards = document.querySelectorAll(".station-card");
    el.classList.add("map-on");
    // The list below the map is the keyboard's and the screen reader's way to the stations: the map
    // itself, its markers and its zoom buttons are left out of the tab order (a marker's label is
    // still the station's name, not Leaflet's English "Marker", for anyone who meets it).
    var map = window.L.map(el, { scrollWheelZoom: false, attributionControl: true, keyboard: false });
    var zoom = el.querySelectorAll(".leaflet-control-zoom a");
    for (var z = 0; z < zoom.length; z++) {
      zoom[z].setAttribute("tabindex", "-1");
      zoom[z].setAttribute("aria-hidden", "true");
    }
    var tiles = el.getAttribute("data-tiles");
    var failed = false;
    if (tiles) {
      var layer = window.L.tileLayer(tiles, {
        subdomains: el.getAttribute("data-subdomains") || "abc",
        attribution: el.getAttribute("data-attribution") || "",
        maxZoom: 18,
        minZoom: 3
      });
      // No tiles (no network, a blocked host): keep the markers on a plain background.
      layer.on("tileerror", function () {
        if (failed) { return; }
        failed = true;
        el.classList.add("map-offline");
        var note = document.createElement("p");
        note.className = "map-note";
        note.textContent = el.getAttribute("data-offline");
        el.appendChild(note);
      });
      layer.addTo(map);
    }
    var bounds = [];
    cards.forEach(function (card) {
      var lat = parseFloat(card.getAttribute("data-lat"));
      var lon = parseFloat(card.getAttribute("data-lon"));
      if (isNaN(lat) || isNaN(lon)) { return; }
      var link = document.createElement("a");
      link.href = card.getAttribute("data-href");
      link.textContent = card.getAttribute("data-name");
      var popup = document.createElement("div");
      popup.appendChild(link);
      var line = document.createElement("div");
      line.textContent = card.getAttribute("data-summary");
      popup.appendChild(line);
      var name = card.getAttribute("data-name");
      window.L.marker([lat, lon], { title: name, alt: name, keyboard: false }).addTo(map).bindPopup(popup);
      bounds.push([lat, lon]);
    });
    var meLat = parseFloat(el.getAttribute("data-me-lat"));
    var meLon = parseFloat(el.getAttribute("data-me-lon"));
    if (!isNaN(meLat) && !isNaN(meLon)) {
      window.L.circleMarker([meLat, meLon], { radius: 8, color: "#1d4ed8", fillOpacity: 0.8 })
        .addTo(map).bindTooltip(el.getAttribute("data-me"));
      bounds.push([meLat, meLon]);
    }
    if (bounds.length > 1) {
      map.fitBounds(bounds, { padding: [24, 24], maxZoom: 15 });
    } else if (bounds.length === 1) {
      map.setView(bounds[0], 14);
    } else {
      map.setView([31.23, 121.47], 11);
    }
  }
})();
