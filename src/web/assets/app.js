// repobox web: the live parts. Every element with a data-live URL follows
// that Server-Sent Events stream. The server sends HTML it rendered and
// escaped (the overview, the data page, a job's fields) and output lines as
// text, which is added as text, never parsed as HTML.
(function () {
  'use strict';

  function follow(el) {
    var url = el.getAttribute('data-live');
    if (!url) {
      return;
    }
    var source = new EventSource(url);
    var replace = function (e) {
      el.innerHTML = e.data;
    };
    source.addEventListener('overview', replace);
    source.addEventListener('data', replace);
    source.addEventListener('state', function (e) {
      var state = document.getElementById('state');
      if (state) {
        state.innerHTML = e.data;
      }
    });
    source.addEventListener('line', function (e) {
      el.appendChild(document.createTextNode(e.data + '\n'));
      el.scrollTop = el.scrollHeight;
    });
    source.addEventListener('problem', function (e) {
      el.setAttribute('data-problem', e.data);
    });
    source.addEventListener('done', function () {
      source.close();
      el.setAttribute('data-done', 'true');
    });
  }

  document.querySelectorAll('[data-live]').forEach(follow);
})();
