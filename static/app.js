// Copy buttons and small progressive enhancements. Everything works without this file.
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-HTTP deployments have no Clipboard API: fall back to a hidden textarea.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try {
        document.execCommand("copy") ? resolve() : reject(new Error("copy refused"));
      } catch (err) {
        reject(err);
      } finally {
        document.body.removeChild(area);
      }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) return;
    var label = button.querySelector("[data-copy-label]") || button;
    var original = label.textContent;
    copyText(target.textContent.trim()).then(
      function () {
        button.setAttribute("data-copied", "true");
        label.textContent = "Copied";
      },
      function () {
        label.textContent = "Press Ctrl+C";
        var range = document.createRange();
        range.selectNodeContents(target);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
    );
    window.setTimeout(function () {
      button.removeAttribute("data-copied");
      label.textContent = original;
    }, 2000);
  });

  // Selects marked data-autosubmit submit their form when changed (a button stays for no-script use).
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
  });

  // Buy form: typing a custom amount selects "Other amount".
  document.addEventListener("input", function (event) {
    if (event.target.name !== "custom") return;
    var other = event.target.form.querySelector('input[name="preset"][value=""]');
    if (other) other.checked = true;
  });
})();
