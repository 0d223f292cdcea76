// Copy buttons: <button class="copy" data-copy="ID-of-element">. The pages work without this.
document.querySelectorAll('button.copy').forEach((b) => {
  b.hidden = false;
  b.addEventListener('click', async () => {
    const el = document.getElementById(b.dataset.copy);
    try {
      await navigator.clipboard.writeText(el.textContent.trim());
      b.textContent = 'Copied';
    } catch (e) {
      const r = document.createRange();
      r.selectNodeContents(el);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(r);
      b.textContent = 'Selected: press Ctrl+C';
    }
  });
});
